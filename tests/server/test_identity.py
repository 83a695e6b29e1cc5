"""Who a request is, with Jupyter's own identity provider: one principal per token (not per
request), distinct users per cookie login, the owner by the runtime secret; and what rests
on it: rate limits, idempotent retries, Cancel, the per-user socket cap (fast tier)."""

from __future__ import annotations

import json
import re
import time
import urllib.parse

import pytest
from jupyter_server.auth.identity import PasswordIdentityProvider

pytestmark = pytest.mark.fast

JUPYTERS_OWN = {"identity_provider_class": PasswordIdentityProvider}


@pytest.fixture
def jp_server_config_extra() -> dict:
    return JUPYTERS_OWN


@pytest.fixture
def token_socket(connect, jp_auth_header):
    """`await token_socket(headers)`: a socket with Jupyter's token header (or `headers`);
    its `welcome` is None when the server refused it."""

    async def _open(headers: dict[str, str] | None = None):
        client = await connect(None, headers=headers or dict(jp_auth_header), welcome=False)
        raw = await client.ws.read_message()
        client.welcome = json.loads(raw) if raw is not None else None
        return client

    return _open


async def post(jp_fetch, path: str, body: dict, headers: dict[str, str] | None = None) -> tuple[int, dict]:
    response = await jp_fetch(
        "llmchat", "api", "rooms", *path.split("/"), method="POST", body=json.dumps(body), headers=headers, raise_error=False
    )
    return response.code, json.loads(response.body or b"{}")


async def login(jp_fetch, jp_serverapp) -> dict[str, str]:
    """A browser's password login with the token: the headers of a new cookie user."""
    page = await jp_fetch("login", headers={"Authorization": ""})
    xsrf = re.search(r"_xsrf=([^;]+)", page.headers["Set-Cookie"]).group(1)
    form = urllib.parse.urlencode({"password": jp_serverapp.identity_provider.token, "_xsrf": xsrf})
    done = await jp_fetch(
        "login", method="POST", body=form, follow_redirects=False, raise_error=False,
        headers={"Authorization": "", "Cookie": f"_xsrf={xsrf}"},
    )
    cookies = "; ".join(c.split(";")[0] for c in done.headers.get_list("Set-Cookie"))
    return {"Authorization": "", "Cookie": f"{cookies}; _xsrf={xsrf}", "X-XSRFToken": xsrf}


async def test_every_request_with_the_token_is_one_user(chat_server, token_socket, jp_fetch):
    first, second = await token_socket(), await token_socket()
    user = first.welcome["data"]["user"]
    assert second.welcome["data"]["user"] == user
    code, _ = await post(jp_fetch, "lab/messages", {"content": "by token"})
    assert code == 201
    await first.join("lab")
    history = await first.recv_type("History")
    assert history["data"]["messages"][0]["data"]["author"]["username"] == user["username"]


async def test_a_client_that_keeps_the_cookie_stays_the_token_user(chat_server, token_socket, jp_fetch):
    user = (await token_socket()).welcome["data"]["user"]
    response = await jp_fetch("llmchat", "api", "stats")
    cookies = "; ".join(c.split(";")[0] for c in response.headers.get_list("Set-Cookie"))
    by_cookie = await token_socket({"Authorization": "", "Cookie": cookies})
    assert by_cookie.welcome["data"]["user"] == user


async def test_the_token_principal_reveals_nothing_of_the_token(chat_server, token_socket, jp_serverapp):
    user = (await token_socket()).welcome["data"]["user"]
    token = jp_serverapp.identity_provider.token
    assert user["username"].startswith("token-") and token not in json.dumps(user)


async def test_cookie_logins_stay_distinct_users(chat_server, token_socket, jp_fetch, jp_serverapp):
    token_user = (await token_socket()).welcome["data"]["user"]["username"]
    one, two = await login(jp_fetch, jp_serverapp), await login(jp_fetch, jp_serverapp)
    users = {(await token_socket(headers)).welcome["data"]["user"]["username"] for headers in (one, one, two)}
    assert len(users) == 2 and token_user not in users


@pytest.mark.parametrize("llmchat_config", [{"rate_limit": 0.5, "rate_limit_burst": 3}])
async def test_token_requests_share_one_rate_limit_across_rest_and_sockets(chat_server, token_socket, jp_fetch, llmchat_config):
    codes = [(await post(jp_fetch, "busy/messages", {"content": f"n{n}"}))[0] for n in range(4)]
    assert codes == [201, 201, 201, 429]
    socket = await token_socket()
    await socket.send("Ping", id="late")
    assert (await socket.recv())["data"]["code"] == 429


@pytest.mark.parametrize("standin_options", [{"delay": 0.2}])
async def test_a_retried_generate_is_answered_with_the_first_ack_across_sockets_and_rest(
    chat_server, token_socket, jp_fetch, standin_options
):
    first, second = await token_socket(), await token_socket()
    await first.send("Generate", {"prompt": "hi", "config": {"max_tokens": 50}}, id="once")
    ack = (await first.recv_type("Ack"))["data"]
    await second.send("Generate", {"prompt": "hi"}, id="once")  # while the answer runs
    assert (await second.recv_type("Ack"))["data"] == ack
    code, rest_ack = await post(jp_fetch, "lab/generate", {"prompt": "hi"}, headers={"Idempotency-Key": "once"})
    assert (code, rest_ack["message_id"]) == (202, ack["message_id"])
    assert len(chat_server.backend.requests) == 1


@pytest.mark.parametrize("standin_options", [{"delay": 0.2}])
async def test_cancel_from_another_socket_of_the_same_token(chat_server, token_socket, standin_options):
    asker, other = await token_socket(), await token_socket()
    await asker.join("lab")
    await asker.send("Generate", {"prompt": "a long answer", "config": {"max_tokens": 200}}, room="lab")
    message_id = (await asker.recv_type("Ack"))["data"]["message_id"]
    await other.send("Cancel", {"message_id": message_id}, id="stop")
    final = (await asker.answer(message_id))[-1]["data"]
    assert final["finish_reason"] == "cancelled"


@pytest.mark.parametrize("llmchat_config", [{"max_connections": 4, "max_connections_per_user": 2}])
async def test_one_user_cannot_hold_every_socket(chat_server, token_socket, jp_fetch, jp_serverapp, llmchat_config):
    await token_socket()
    await token_socket()
    refused = await token_socket()
    assert refused.welcome is None
    assert refused.ws.close_code == 1013 and "max_connections_per_user" in refused.ws.close_reason
    other = await token_socket(await login(jp_fetch, jp_serverapp))
    assert other.welcome["type"] == "Welcome"


@pytest.mark.parametrize("llmchat_config", [{"max_connections": 2, "max_connections_per_user": 2}])
async def test_the_owner_gets_in_when_the_server_is_full(chat_server, token_socket, llmchat_config):
    await token_socket()
    await token_socket()
    owner = {"Authorization": f"llmchat-secret {chat_server.settings['llmchat_secret']}"}
    kernel = await token_socket(owner)
    assert kernel.welcome["type"] == "Welcome" and kernel.welcome["data"]["user"]["name"] == "notebook"


async def test_the_rate_buckets_of_quiet_users_are_forgotten(make_chat):
    service = make_chat(rate_limit=10.0, rate_limit_burst=20).service
    started = time.monotonic()
    for n in range(5000):  # e.g. one token request each, before identities were stable
        service.rate.take(f"user-{n}", now=started)
    for _ in range(20):
        service.rate.take("talker", now=started + 1.9)  # its bucket is empty
    await service.sweep(now=started + 2.0)  # refilled after burst / rate = 2 s
    assert len(service.rate) == 1
    await service.sweep(now=started + 4.0)
    assert len(service.rate) == 0
