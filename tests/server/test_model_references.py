"""`c.LLMChat.model` by reference: downloaded and loaded in the background, failures told (fast tier).

The model backend is the managed one around the stand-in (tests/standin.py): what is under
test is finding the file (a local fake Hub, a fake Ollama store), the states and progress a
member sees, and the Error 503 meanwhile; the real model's load is tests/server/test_model_switch.py.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from support.fake_hub import REPO, hub, model_dirs, ollama_store, tiny_gguf  # noqa: F401 (fixtures)

pytestmark = pytest.mark.fast


@pytest.fixture
def llmchat_config(model: str, hub: Any) -> dict[str, Any]:
    return {"model": model}


@pytest.fixture
def app(jp_serverapp: Any, http_server_client: Any) -> Any:
    """The running extension, not waited for: the test watches its model come."""
    (extension,) = jp_serverapp.extension_manager.extension_apps["jupyter_llmchat"]
    return extension


async def until_settled(client: Any, seen: list[dict[str, Any]], timeout: float = 30.0) -> list[dict[str, Any]]:
    """`seen` and every `Stats.model` pushed next, until the model is loaded or failed."""
    while not seen or seen[-1]["state"] not in ("loaded", "failed"):
        seen.append((await client.recv_type("Stats", timeout=timeout))["data"]["model"])
    return seen


@pytest.fixture
def slow_hub(hub: Any) -> Any:
    hub.slow = 0.06  # 32 chunks of 64 kB: about 2 s, several progress pushes
    return hub


@pytest.mark.parametrize("model", [f"hf:{REPO}"])
async def test_an_hf_reference_downloads_with_progress_while_questions_get_503(slow_hub, app, connect):
    hub = slow_hub
    ada = await connect("tok-ada")
    welcome = ada.welcome["data"]["model"]
    assert welcome["loaded"] is False and welcome["state"] in ("resolving", "downloading") and welcome["error"] is None
    await ada.join("general")
    seen: list[dict[str, Any]] = []
    while True:  # a question asked meanwhile is refused, saying what is happening
        ask = await ada.send("Generate", {"prompt": "Hi"}, room="general")
        while (frame := await ada.recv_type("Error", "Stats"))["type"] == "Stats":
            seen.append(frame["data"]["model"])
        assert frame["id"] == ask and frame["data"]["code"] == 503
        if "downloading tiny-Q4_K_M.gguf: " in frame["data"]["message"]:
            break
        await asyncio.sleep(0.02)
    assert frame["data"]["message"].startswith("model not available: downloading tiny-Q4_K_M.gguf: ")
    assert frame["data"]["message"].endswith(" %")
    states = await until_settled(ada, seen)
    progress = [s["progress"] for s in states if s["state"] == "downloading" and s["progress"] is not None]
    assert any(0 < p < 1 for p in progress) and progress == sorted(progress), states
    final = states[-1]
    assert final == {**final, "state": "loaded", "loaded": True, "reference": f"hf:{REPO}:Q4_K_M", "progress": None, "error": None}
    # the file picked by Q4_K_M, into the test's Hugging Face cache; the decoy never fetched
    assert hub.fetched() == [f"/{REPO}/resolve/main/tiny-Q4_K_M.gguf"]
    ask = await ada.send("Generate", {"prompt": "Hi", "config": {"max_tokens": 2}}, room="general")
    assert (await ada.recv_type("Ack", "Error"))["type"] == "Ack"


@pytest.fixture
def cached_then_offline(hub: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    from jupyter_llmchat.models import resolve

    first = resolve(f"hf:{REPO}")
    hub.close()  # the Hub is gone: the cache must do
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return first


@pytest.mark.parametrize("model", [f"hf:{REPO}"])
async def test_a_cached_hf_model_is_used_offline_without_the_hub(cached_then_offline, app, model_dirs):
    first = cached_then_offline
    assert await app.backend.wait_loaded(30)
    assert app.backend.engine.settings.model_path == first.path and str(model_dirs / "hf") in first.path


FAILURES = {
    "bad reference": ("hf:not-a-repo", "bad Hugging Face reference 'hf:not-a-repo'"),
    "no such repository (404)": ("hf:org/missing-GGUF", "no Hugging Face repository org/missing-GGUF on http://127.0.0.1:"),
}  # every other failure: tests/models/test_resolve.py


@pytest.fixture
def failing(request: pytest.FixtureRequest, hub: Any) -> str:
    """The name of the failure case (its model setting: `model`)."""
    case = request.param
    return case


@pytest.fixture
def model(request: pytest.FixtureRequest) -> str:
    """The `model` setting: a test's parameter, or the failing case's."""
    if "failing" in request.fixturenames:
        return FAILURES[request.getfixturevalue("failing")][0]
    return getattr(request, "param", "")


@pytest.mark.parametrize("failing", list(FAILURES), indirect=True)
async def test_a_model_that_cannot_be_had_leaves_the_server_up_saying_why(failing, app, connect, api):
    model, reason = FAILURES[failing]
    await app.backend.wait_loaded(30)
    status, stats = await api("GET", "stats")
    assert status == 200
    model_stats = stats["model"]
    assert model_stats["state"] == "failed" and model_stats["loaded"] is False and reason in model_stats["error"], model_stats
    ada = await connect("tok-ada")
    assert ada.welcome["data"]["model"]["error"] == model_stats["error"]
    await ada.join("general")
    await ada.send("Generate", {"prompt": "Hi"}, room="general")
    refusal = (await ada.recv_type("Error"))["data"]
    assert refusal["code"] == 503 and reason in refusal["message"]
    await ada.send("Text", {"content": "the room still works"}, room="general")
    assert (await ada.recv_type("Text"))["data"]["content"] == "the room still works"


@pytest.fixture
def ollama_blob(model_dirs: Path, hub: Any) -> tuple[Path, list[Path]]:
    blob = ollama_store(model_dirs / "ollama", "tiny", "1b", tiny_gguf(model_dirs / "src" / "tiny.gguf"))
    return blob, same_size(model_dirs, blob)


def same_size(root: Path, blob: Path) -> list[Path]:
    """Files under `root` as large as `blob`: a copy of it would be one more."""
    size = blob.stat().st_size
    return sorted(p for p in root.rglob("*") if p.is_file() and p.stat().st_size == size)


@pytest.mark.parametrize("model", ["ollama:tiny:1b"])
async def test_an_ollama_model_is_read_in_place_from_its_store(ollama_blob, app, model_dirs):
    blob, before = ollama_blob
    assert await app.backend.wait_loaded(30)
    assert app.backend.engine.settings.model_path == str(blob)  # the blob itself, not a copy
    assert same_size(model_dirs, blob) == before
    assert app.backend.status()["reference"] == "ollama:tiny:1b"
