"""llama.cpp's ctypes bindings, imported on first use: importing them loads the native library,
which a kernel, the CLI or a server on the OpenAI backend never needs."""

from __future__ import annotations

from types import ModuleType


def llama() -> ModuleType:
    """`llama_cpp.llama_cpp`, the low-level API the engine drives."""
    import llama_cpp.llama_cpp as bindings

    return bindings
