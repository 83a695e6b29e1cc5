"""Models by reference: parse `c.LLMChat.model`, find or download its GGUF, list the machine's GGUFs.

Shared by the server (which resolves its `model` setting on a thread of its own) and the CLI
(`jupyter llmchat models`, `pull`). Imports neither the server nor llama.cpp: `huggingface_hub`
and `gguf` are imported only when a download or a header read happens.
"""

from .errors import ModelError
from .reference import BadReference, Reference, parse_reference
from .resolve import Resolved, packaged_path, resolve

__all__ = ["BadReference", "ModelError", "Reference", "Resolved", "packaged_path", "parse_reference", "resolve"]
