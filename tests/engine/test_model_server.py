"""The model server an admin starts for many Jupyter servers (`engine/model_server.py`)."""

from __future__ import annotations

import pytest

from jupyter_llmchat.engine.model_server import CHAT_FORMAT, gemma_prompt, with_defaults

pytestmark = pytest.mark.fast


def test_the_system_prompt_reaches_the_model_in_the_engines_layout():
    # llama-cpp-python's own "gemma" format drops system messages, and with them the
    # examples that make the small base model answer like a chat.
    prompt = gemma_prompt([
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Salut"},
        {"role": "user", "content": [{"type": "text", "text": "How are you?"}]},
    ])
    assert prompt.startswith("<start_of_turn>user\nAnswer in French.\n\n")
    assert prompt.count("<start_of_turn>") == 2  # one user turn, then the answer's
    assert "user\nHi\nmodel\nSalut\n\nuser\nHow are you?<end_of_turn>\n<start_of_turn>model\n" in prompt


def test_defaults_fill_in_only_what_the_admin_left_out():
    args = with_defaults(["--port", "8765", "--model", "/models/better-model.gguf"])
    assert args[:4] == ["--port", "8765", "--model", "/models/better-model.gguf"]
    assert args[4:] == ["--model_alias", "better-model", "--chat_format", CHAT_FORMAT]
    assert with_defaults(["--chat_format=chatml", "--model_alias", "x", "--model=/m.gguf"]) == [
        "--chat_format=chatml", "--model_alias", "x", "--model=/m.gguf",
    ]
