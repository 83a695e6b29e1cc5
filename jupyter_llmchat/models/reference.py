"""What `c.LLMChat.model` may say, parsed once: the packaged default, a path, `hf:` or `ollama:`.

Parsing never touches the disk or the network, so a reference is checked (and a bad one
refused with a sentence that says what is allowed) before anything is downloaded.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Kind = Literal["default", "path", "hf", "ollama"]

_NAME = r"[A-Za-z0-9][A-Za-z0-9._-]{0,95}"
_HF_REPO = re.compile(rf"^({_NAME})/({_NAME})$")
_QUANT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_OLLAMA_NAME = re.compile(rf"^{_NAME}(/{_NAME}){{0,2}}$")
_OLLAMA_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]+):")
HELP = 'a model is "" (the packaged one), a GGUF path, hf:ORG/REPO[:QUANT], hf:ORG/REPO/FILE.gguf or ollama:NAME[:TAG]'


class BadReference(ValueError):
    """A `model` setting that is none of the forms a reference may take."""


@dataclass(frozen=True)
class Reference:
    """A parsed model reference; `str()` gives it back in its canonical spelling."""

    kind: Kind
    path: str = ""  # kind "path": the file, user-expanded
    repo: str = ""  # kind "hf": ORG/REPO
    quant: str = ""  # kind "hf": the quantization asked for (upper case), or ""
    filename: str = ""  # kind "hf": the file asked for, or ""
    name: str = ""  # kind "ollama": NAME (may hold a namespace)
    tag: str = ""  # kind "ollama": TAG

    def __str__(self) -> str:
        if self.kind == "path":
            return self.path
        if self.kind == "hf":
            return f"hf:{self.repo}" + (f"/{self.filename}" if self.filename else f":{self.quant}" if self.quant else "")
        if self.kind == "ollama":
            return f"ollama:{self.name}:{self.tag}"
        return ""


def parse_reference(text: str) -> Reference:
    """The reference `text` names, or `BadReference` saying why it names none."""
    text = text.strip()
    if not text:
        return Reference("default")
    if text.startswith("hf:"):
        return _hf(text[3:], text)
    if text.startswith("ollama:"):
        return _ollama(text[7:], text)
    scheme = _SCHEME.match(text)
    if scheme and not Path(text).expanduser().exists() and "/" not in scheme.group(1):
        raise BadReference(f"unknown model reference {text!r}: {HELP}")
    return Reference("path", path=str(Path(text).expanduser()))


def _hf(rest: str, text: str) -> Reference:
    repo_part, _, quant = rest.partition(":")
    parts = repo_part.split("/")
    repo = "/".join(parts[:2])
    if len(parts) < 2 or not _HF_REPO.match(repo):
        raise BadReference(f"bad Hugging Face reference {text!r}: expected hf:ORG/REPO, hf:ORG/REPO:QUANT or hf:ORG/REPO/FILE.gguf")
    filename = "/".join(parts[2:])
    if filename:
        if quant:
            raise BadReference(f"bad Hugging Face reference {text!r}: name a file or a quantization, not both")
        if not filename.lower().endswith(".gguf") or ".." in parts[2:] or "" in parts[2:]:
            raise BadReference(f"bad Hugging Face reference {text!r}: the file must be a .gguf inside the repository")
        return Reference("hf", repo=repo, filename=filename)
    if quant and not _QUANT.match(quant):
        raise BadReference(f"bad quantization in {text!r}: letters, digits and _ . - (e.g. Q4_K_M)")
    return Reference("hf", repo=repo, quant=quant.upper())


def _ollama(rest: str, text: str) -> Reference:
    name, _, tag = rest.partition(":")
    if not _OLLAMA_NAME.match(name) or (tag and not _OLLAMA_TAG.match(tag)):
        raise BadReference(f"bad Ollama reference {text!r}: expected ollama:NAME or ollama:NAME:TAG (e.g. ollama:qwen2.5:1.5b)")
    return Reference("ollama", name=name, tag=tag or "latest")
