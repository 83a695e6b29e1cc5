"""One model for many Jupyter servers: llama-cpp-python's OpenAI-compatible server, set up
the way this engine runs the model.

    python -m jupyter_llmchat.engine.model_server --port 8765 --n_threads 2

is `python -m llama_cpp.server` (its `[server]` extra) with three differences, so that
`model_backend = "openai"` servers get the answers the in-process engine would give:

- `--model` defaults to the GGUF this package ships, `--model_alias` to the file's name;
- `--chat_format` defaults to `llmchat-gemma`, the engine's own layout for a GGUF without a
  chat template (the system prompt, the few-shot examples and the conversation in one
  Gemma user turn; docs/context.md). llama-cpp-python's `gemma` format drops the system
  message, and with it the examples that make the small base model answer like a chat;
- on a CPU that reports AMX, the weights stay in plain CPU buffers: llama.cpp's AMX
  buffers crash its matmul at the first answer on such machines (engine/model.py does the
  same for the in-process engine; llama_cpp.server has no setting for it).

Every other `llama_cpp.server` argument passes through (`--help` lists them).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from .chat_format import GemmaFormatter
from .model import _cpu_has_amx, default_model_path
from .types import ChatTurn

CHAT_FORMAT = "llmchat-gemma"


def gemma_prompt(messages: list[dict[str, Any]]) -> str:
    """The engine's Gemma layout of OpenAI `messages`, as one prompt string."""
    turns = [ChatTurn(str(m.get("role", "user")), _text(m.get("content"))) for m in messages]
    formatted = GemmaFormatter().format(turns)
    return "".join(text for text, _ in formatted.segments)


def _text(content: Any) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(str(part.get("text", "")) for part in content if isinstance(part, dict))
    return ""


def _register_chat_format() -> None:
    from llama_cpp.llama_chat_format import ChatFormatterResponse, register_chat_format

    @register_chat_format(CHAT_FORMAT)
    def _format(messages: list[dict[str, Any]], **_: Any) -> ChatFormatterResponse:
        stops = ["<end_of_turn>", *GemmaFormatter.extra_stops]
        return ChatFormatterResponse(prompt=gemma_prompt(messages), stop=stops)


def _plain_cpu_buffers() -> None:
    """llama.cpp's model defaults with extra (AMX) buffer types off; Llama reads them at load."""
    import llama_cpp.llama_cpp as llama

    defaults = llama.llama_model_default_params

    def without_extra_buffers() -> Any:
        params = defaults()
        params.use_extra_bufts = False
        return params

    llama.llama_model_default_params = without_extra_buffers


def with_defaults(argv: list[str]) -> list[str]:
    """`argv` plus this package's model and chat format where it names none."""
    given = {arg.split("=", 1)[0] for arg in argv if arg.startswith("--")}
    if "--config_file" in given:
        return argv
    extra: list[str] = []
    model = _value(argv, "--model")
    if model is None:
        model = str(default_model_path())
        extra += ["--model", model]
    if "--model_alias" not in given:  # the name clients see: the file's, not its whole path
        extra += ["--model_alias", Path(model).stem]
    if "--chat_format" not in given:
        extra += ["--chat_format", CHAT_FORMAT]
    return argv + extra


def _value(argv: list[str], name: str) -> str | None:
    """The value of `--name value` or `--name=value` in argv."""
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def main() -> None:
    _register_chat_format()
    if _cpu_has_amx():
        _plain_cpu_buffers()
    sys.argv = [sys.argv[0], *with_defaults(sys.argv[1:])]
    from llama_cpp.server.__main__ import main as serve

    serve()


if __name__ == "__main__":
    main()
