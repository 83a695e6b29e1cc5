"""`ollama:` references: a model Ollama has pulled, read in place from its store (never copied).

Ollama keeps a manifest per model and tag (`manifests/<host>/<namespace>/<name>/<tag>`, JSON)
whose layer of media type `application/vnd.ollama.image.model` names the GGUF by digest,
stored as `blobs/sha256-<hex>`. The store is `OLLAMA_MODELS`, by default `~/.ollama/models`.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import ModelError
from .gguf_info import NotGGUF, check_magic
from .reference import Reference

MODEL_LAYER = "application/vnd.ollama.image.model"
REGISTRY = "registry.ollama.ai"


def store() -> Path:
    """Ollama's model store, as the environment says now."""
    return Path(os.environ.get("OLLAMA_MODELS") or "~/.ollama/models").expanduser()


def manifest_path(ref: Reference) -> Path:
    """Where Ollama keeps the manifest of `ref` (library, user/model or host/namespace/model)."""
    parts = ref.name.split("/")
    if len(parts) == 1:
        parts = [REGISTRY, "library", *parts]
    elif len(parts) == 2:
        parts = [REGISTRY, *parts]
    return store().joinpath("manifests", *parts, ref.tag)


def resolve(ref: Reference) -> Path:
    """The blob holding the GGUF of `ref`, checked to be one; `ModelError` saying why not."""
    root = store()
    if not (root / "manifests").is_dir():
        raise ModelError(f"no Ollama model store at {root} (set OLLAMA_MODELS to where `ollama pull` puts models)")
    path = manifest_path(ref)
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        pulled = ", ".join(reference.removeprefix("ollama:") for reference, _ in installed()[:8]) or "none"
        raise ModelError(f"no Ollama model {ref.name}:{ref.tag} in {root} (pulled: {pulled}); `ollama pull {ref.name}:{ref.tag}` first") from None
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot read Ollama's manifest {path}: {error}") from None
    blob = _model_blob(manifest, root)
    if blob is None:
        raise ModelError(f"ollama:{ref.name}:{ref.tag} has no GGUF model layer ({MODEL_LAYER}) in {path}")
    try:
        check_magic(blob)
    except NotGGUF as error:
        raise ModelError(f"ollama:{ref.name}:{ref.tag}: {error}") from None
    return blob


def _model_blob(manifest: object, root: Path) -> Path | None:
    layers = manifest.get("layers") if isinstance(manifest, dict) else None
    for layer in layers if isinstance(layers, list) else []:
        if isinstance(layer, dict) and layer.get("mediaType") == MODEL_LAYER:
            digest = str(layer.get("digest", ""))
            algorithm, _, hexdigest = digest.partition(":")
            if algorithm and hexdigest.isalnum():
                return root / "blobs" / f"{algorithm}-{hexdigest}"
    return None


def installed() -> list[tuple[str, Path]]:
    """(reference, blob) of every model in the store whose model layer is there."""
    root = store()
    manifests = root / "manifests"
    found: list[tuple[str, Path]] = []
    if not manifests.is_dir():
        return found
    for path in sorted(p for p in manifests.rglob("*") if p.is_file()):
        parts = path.relative_to(manifests).parts
        if len(parts) != 4:
            continue
        host, namespace, name, tag = parts
        try:
            blob = _model_blob(json.loads(path.read_text(encoding="utf-8")), root)
        except (OSError, ValueError):
            continue
        if blob is None or not blob.is_file():
            continue
        prefix = "" if (host, namespace) == (REGISTRY, "library") else f"{namespace}/" if host == REGISTRY else f"{host}/{namespace}/"
        found.append((f"ollama:{prefix}{name}:{tag}", blob))
    return found
