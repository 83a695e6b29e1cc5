"""One principal per token, measured against a real server with its default limits.

Starts a real `jupyter server` with the extension, then sends 150 REST posts with the
token header (each a cookie-less request: before, each was a new anonymous user), 150 with
one cookie login, opens 30 sockets with the token header, and retries one `Generate` id
over REST and over a second socket.

    .venv/bin/python bench/token_identity.py

Prints how many posts were refused with 429 for each, how many distinct users the 30
sockets were, and how many answers the three tries with one id started.
"""

from __future__ import annotations

import json
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import websocket

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent / "tests")]

from support.servers import running_server  # noqa: E402


def post(url: str, headers: dict[str, str], body: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST", headers={**headers, "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


def socket(server, headers: dict[str, str]) -> tuple[websocket.WebSocket, dict]:
    """A socket and its first frame (`{"type": "closed"}` when the server closed it instead)."""
    ws = websocket.create_connection(server.ws_url, header=[f"{k}: {v}" for k, v in headers.items()], subprotocols=["llmchat.v1"], timeout=30)
    try:
        raw = ws.recv()  # "" once the server's close frame came
    except websocket.WebSocketException:
        raw = ""
    return ws, json.loads(raw) if raw else {"type": "closed"}


def ack(ws: websocket.WebSocket, request_id: str) -> str:
    """Send a Generate with this id; the message id of its Ack."""
    ws.send(json.dumps({"type": "Generate", "id": request_id, "data": {"prompt": "Hi"}}))
    while True:
        frame = json.loads(ws.recv())
        if frame["type"] in ("Ack", "Error"):
            return frame["data"].get("message_id") or f"Error {frame['data']['code']}"


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp, running_server(Path(tmp), [f"--LLMChat.history_path={tmp}/history.sqlite", "--LLMChat.max_tokens=4"]) as server:
        server.wait_for_model()
        token = {"Authorization": f"token {server.token}"}
        messages = server.url + "llmchat/api/rooms/bench/messages"
        by_token = sum(post(messages, token, {"content": f"t{n}"})[0] == 429 for n in range(150))
        login = server.login()
        by_cookie = sum(post(messages, login, {"content": f"c{n}"})[0] == 429 for n in range(150))
        sockets = [socket(server, token) for _ in range(30)]
        users = {welcome["data"]["user"]["username"] for _, welcome in sockets if welcome["type"] == "Welcome"}
        refused = sum(welcome["type"] != "Welcome" for _, welcome in sockets)
        for ws, _ in sockets:
            ws.close()
        time.sleep(3)  # the rate bucket refills
        acks = [ack(socket(server, token)[0], "once"), ack(socket(server, token)[0], "once")]
        acks.append(post(server.url + "llmchat/api/rooms/bench/generate", {**token, "Idempotency-Key": "once"}, {"prompt": "Hi"})[1].get("message_id"))
        stats = server.get("llmchat/api/stats")
    print(f"REST posts refused (429) of 150: token header {by_token}, one cookie login {by_cookie}")
    print(f"30 token sockets: {len(users)} distinct user(s), {refused} refused (max_connections_per_user 20: the rest closed 1013)")
    print(f"one Generate id tried 3 times (socket, second socket, REST): {len({a for a in acks if a.startswith('m-')})} answer(s) started {acks} (a retry after the answer ended: Error 409)")
    print(f"messages received by the server: {stats['messages_received']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
