"""Every GGUF already on this machine that a `model` reference can name, described from its header.

Where they are looked for: the packaged model, huggingface_hub's cache, Ollama's store and
LM Studio's folders (`~/.lmstudio/models`, `~/.cache/lm-studio/models`). Nothing is
downloaded and no weights are read; a file that is not a readable GGUF is left out.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterator

from . import hub, ollama
from .gguf_info import SPLIT, GGUFInfo, NotGGUF, read_info


def lmstudio_dirs() -> list[Path]:
    home = Path(os.environ.get("HOME") or Path.home())
    return [home / ".lmstudio" / "models", home / ".cache" / "lm-studio" / "models"]


def local_models(packaged: Callable[[], Path] | None = None) -> list[GGUFInfo]:
    """The machine's GGUFs, each once (the first place that names a file wins)."""
    seen: set[Path] = set()
    found: list[GGUFInfo] = []
    for reference, path in _candidates(packaged):
        real = path.resolve()
        if real in seen:
            continue
        seen.add(real)
        try:
            found.append(read_info(path, reference))
        except NotGGUF:
            continue
    return found


def _candidates(packaged: Callable[[], Path] | None) -> Iterator[tuple[str, Path]]:
    if packaged is not None:
        try:
            yield "", packaged()
        except Exception:  # the package is missing or broken: nothing to list
            pass
    yield from _hub_cache()
    yield from ollama.installed()
    for folder in lmstudio_dirs():
        for path in _ggufs(folder):
            yield str(path), path


def _ggufs(folder: Path) -> list[Path]:
    """Model GGUFs under `folder`: split models by their first part, no vision projectors."""
    if not folder.is_dir():
        return []
    paths = []
    for path in sorted(folder.rglob("*.gguf")):
        split = SPLIT.search(path.name)
        if "mmproj" in path.name.lower() or (split and int(split.group(1)) != 1):
            continue
        paths.append(path)
    return paths


def _hub_cache() -> Iterator[tuple[str, Path]]:
    """The GGUFs of every cached model repository's snapshots, with an `hf:` reference each."""
    cache = hub.hub_cache()
    if not cache.is_dir():
        return
    for repo_dir in sorted(cache.glob("models--*--*")):
        repo = repo_dir.name.removeprefix("models--").replace("--", "/", 1)
        for snapshot in sorted((repo_dir / "snapshots").glob("*")):
            paths = _ggufs(snapshot)
            quants = [hub.quant_of(p.name) for p in paths]
            for path, quant in zip(paths, quants):
                unique = quant is not None and quants.count(quant) == 1
                name = path.relative_to(snapshot).as_posix()
                yield (f"hf:{repo}:{quant}" if unique else f"hf:{repo}/{name}"), path
