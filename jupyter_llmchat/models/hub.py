"""`hf:` references: pick the GGUF of a Hugging Face repository and download it with `huggingface_hub`.

Everything goes through `huggingface_hub`, so its cache (`HF_HOME`, `HF_HUB_CACHE`), its
endpoint (`HF_ENDPOINT`), its token (`HF_TOKEN`, `hf auth login`), its offline mode
(`HF_HUB_OFFLINE`) and its resumable `.incomplete` downloads are the user's usual ones. The
environment is read at each call, not when `huggingface_hub` was imported. A model is
downloaded once: when the cache holds all of it, the Hub is not asked again (a server starts
as fast offline as online); otherwise, offline or when the Hub cannot be reached, the
repository's files are looked up in the cache instead.
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from .errors import ModelError
from .gguf_info import SPLIT, NotGGUF, check_magic, human_size
from .reference import Reference

DEFAULT_QUANT = "Q4_K_M"
_QUANT_IN_NAME = re.compile(r"(?<![A-Z0-9])(I?Q\d(?:_[A-Z0-9]{1,2}){0,2}|BF16|F16|F32)(?![A-Z0-9])")

# (bytes done, bytes in all, what is happening) -> None; called from the downloading thread.
Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class Choice:
    """The file(s) of a repository a reference picked: several for a split GGUF."""

    files: tuple[str, ...]
    size: int

    @property
    def first(self) -> str:
        return self.files[0]


def hub_cache() -> Path:
    """huggingface_hub's cache folder as the environment says now."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME") or "~/.cache", "huggingface")
    return Path(home).expanduser() / "hub"


def hub_endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")


def offline() -> bool:
    return (os.environ.get("HF_HUB_OFFLINE") or "").strip().lower() in ("1", "on", "yes", "true")


def quant_of(filename: str) -> str | None:
    """The quantization a file name says (Q4_K_M, IQ3_XS, F16, …), or None."""
    stem = SPLIT.sub(".gguf", Path(filename).name).upper().removesuffix(".GGUF")
    found = _QUANT_IN_NAME.findall(stem)
    return found[-1] if found else None


def choose(files: dict[str, int], ref: Reference) -> Choice:
    """The GGUF that `ref` names among a repository's `files` ({path: size}); ModelError if none.

    A file asked for by name must be there. Otherwise the model files (not vision projectors,
    `mmproj`) are grouped (a split GGUF is one model), and `QUANT` picks the one whose name
    holds it; without one, Q4_K_M if there is one, else the smallest.
    """
    if ref.filename:
        if ref.filename not in files:
            raise ModelError(f"no file {ref.filename} in {ref.repo} (on {hub_endpoint()})")
        parts = _parts_of(ref.filename, files)
        return Choice(tuple(parts), sum(files[p] for p in parts))
    groups: dict[str, list[str]] = {}
    for path in sorted(files):
        if path.lower().endswith(".gguf") and "mmproj" not in path.lower():
            groups.setdefault(SPLIT.sub(".gguf", path), []).append(path)
    if not groups:
        raise ModelError(f"{ref.repo} holds no GGUF file (is it a GGUF repository? its names usually end in -GGUF)")
    choices = [Choice(tuple(parts), sum(files[p] for p in parts)) for parts in groups.values()]
    wanted = ref.quant or DEFAULT_QUANT
    matching = [c for c in choices if quant_of(c.first) == wanted] or [c for c in choices if wanted in c.first.upper()]
    if matching:
        return min(matching, key=lambda c: c.size)
    if ref.quant:
        have = sorted({quant_of(c.first) or Path(c.first).name for c in choices})
        raise ModelError(f"no {ref.quant} GGUF in {ref.repo}; it has: {', '.join(have)}")
    return min(choices, key=lambda c: c.size)


def _parts_of(filename: str, files: dict[str, int]) -> list[str]:
    match = SPLIT.search(filename)
    if match is None:
        return [filename]
    count = int(match.group(2))
    stem = filename[: match.start()]
    parts = [f"{stem}-{index:05d}-of-{count:05d}.gguf" for index in range(1, count + 1)]
    missing = [p for p in parts if p not in files]
    if missing:
        raise ModelError(f"split GGUF {filename} is incomplete in its repository: {', '.join(missing)} missing")
    return parts


def resolved_reference(ref: Reference, choice: Choice) -> str:
    """The reference as resolved: `hf:ORG/REPO:QUANT` when the name says the quantization."""
    if ref.filename:
        return str(ref)
    quant = quant_of(choice.first)
    return f"hf:{ref.repo}:{quant}" if quant else f"hf:{ref.repo}/{choice.first}"


def repo_files(ref: Reference) -> dict[str, int]:
    """{path: size} of the repository, from the Hub, or from the cache when offline or unreachable."""
    if offline():
        return _cached_files(ref, "offline (HF_HUB_OFFLINE is set)")
    from huggingface_hub import HfApi
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError

    try:
        tree = HfApi(endpoint=hub_endpoint()).list_repo_tree(ref.repo, recursive=True)
        return {item.path: int(getattr(item, "size", 0) or 0) for item in tree if hasattr(item, "size")}
    except GatedRepoError:
        raise ModelError(_gated(ref)) from None
    except RepositoryNotFoundError:
        raise ModelError(
            f"no Hugging Face repository {ref.repo} on {hub_endpoint()} (or it is private: set HF_TOKEN)"
        ) from None
    except Exception as error:  # no network, proxy, DNS, a Hub that is down: try the cache
        if _is_network(error):
            return _cached_files(ref, f"cannot reach {hub_endpoint()} ({_short(error)})")
        raise ModelError(f"listing {ref.repo} on {hub_endpoint()} failed: {_short(error)}") from None


def _cached_files(ref: Reference, why: str) -> dict[str, int]:
    """The files of the repository's newest cached snapshot (`refs/main`)."""
    snapshot = _snapshot(ref)
    if snapshot is None:
        raise ModelError(f"{why}, and {ref.repo} is not in the Hugging Face cache ({hub_cache()})")
    files = {
        str(p.relative_to(snapshot)): p.stat().st_size for p in snapshot.rglob("*.gguf") if p.is_file()
    }
    if not files:
        raise ModelError(f"{why}, and the cache holds no GGUF of {ref.repo} ({snapshot})")
    return files


def _snapshot(ref: Reference) -> Path | None:
    folder = hub_cache() / ("models--" + ref.repo.replace("/", "--"))
    try:
        commit = (folder / "refs" / "main").read_text().strip()
    except OSError:
        return None
    snapshot = folder / "snapshots" / commit
    return snapshot if commit and snapshot.is_dir() else None


def download(ref: Reference, progress: Progress | None = None) -> tuple[Path, str]:
    """The local path of the (first part of the) GGUF `ref` names, downloading what is missing,
    and the reference as resolved. Every failure is a `ModelError` a user can act on."""
    from huggingface_hub import hf_hub_download

    cached = _from_cache(ref)
    if cached is not None:
        return cached
    files = repo_files(ref)
    choice = choose(files, ref)
    done = 0
    first: Path | None = None
    for filename in choice.files:
        label = Path(filename).name
        bar = _bar_class(progress, done, choice.size, label)
        try:
            path = Path(
                hf_hub_download(
                    ref.repo, filename, cache_dir=hub_cache(), endpoint=hub_endpoint(),
                    local_files_only=offline(), tqdm_class=bar,
                )
            )
        except Exception as error:
            raise ModelError(_download_error(ref, filename, files.get(filename, 0), error)) from None
        done += files.get(filename, 0)
        try:
            check_magic(path)
        except NotGGUF:
            raise ModelError(f"{filename} from {ref.repo} is not a GGUF model file") from None
        first = first or path
    assert first is not None
    return first, resolved_reference(ref, choice)


def _from_cache(ref: Reference) -> tuple[Path, str] | None:
    """The model from the cache when all of it is there: no network, no wait (downloaded once)."""
    try:
        files = _cached_files(ref, "")
        choice = choose(files, ref)
    except ModelError:
        return None
    snapshot = _snapshot(ref)
    if snapshot is None or not all((snapshot / name).is_file() for name in choice.files):
        return None
    return snapshot / choice.first, resolved_reference(ref, choice)


def _bar_class(progress: Progress | None, done: int, total: int, label: str) -> Any:
    """A `tqdm_class` for huggingface_hub that reports bytes to `progress`, across split parts."""

    class Bar:
        def __init__(self, *args: Any, initial: int = 0, **kwargs: Any) -> None:
            self.n = int(initial or 0)
            self._report()

        def _report(self) -> None:
            if progress is not None:
                progress(done + self.n, total, f"downloading {label}")

        def update(self, n: int | float | None = 1) -> None:
            self.n += int(n or 0)
            self._report()

        def __enter__(self) -> "Bar":
            return self

        def __exit__(self, *exc: Any) -> None:
            return None

        def close(self) -> None:
            return None

        def set_description(self, *args: Any, **kwargs: Any) -> None:
            return None

    return Bar


def _download_error(ref: Reference, filename: str, size: int, error: BaseException) -> str:
    from huggingface_hub.errors import EntryNotFoundError, GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError

    if isinstance(error, GatedRepoError):
        return _gated(ref)
    if isinstance(error, RepositoryNotFoundError):
        return f"no Hugging Face repository {ref.repo} on {hub_endpoint()} (or it is private: set HF_TOKEN)"
    if isinstance(error, LocalEntryNotFoundError):
        return f"{filename} of {ref.repo} is not in the Hugging Face cache ({hub_cache()}) and cannot be downloaded now: {_short(error)}"
    if isinstance(error, EntryNotFoundError):
        return f"no file {filename} in {ref.repo} (on {hub_endpoint()})"
    if isinstance(error, OSError) and error.errno == errno.ENOSPC:
        need = f" ({human_size(size)} needed)" if size else ""
        return f"disk full while downloading {filename} into {hub_cache()}{need}: free some space and try again"
    if "Consistency check failed" in str(error) or "should be of size" in str(error):
        return f"the download of {filename} was cut short ({_short(error)}); try again: it resumes where it stopped"
    if _is_network(error):
        return f"cannot download {filename} from {hub_endpoint()}: {_short(error)}"
    return f"downloading {filename} from {ref.repo} failed: {_short(error)}"


def _gated(ref: Reference) -> str:
    return f"{ref.repo} is gated: accept its licence on its Hugging Face page, then set HF_TOKEN (or run `hf auth login`)"


def _is_network(error: BaseException) -> bool:
    names = {cls.__name__ for cls in type(error).__mro__}
    return bool(names & {"ConnectError", "ConnectTimeout", "ReadTimeout", "TimeoutException", "NetworkError",
                         "ConnectionError", "OfflineModeIsEnabled", "ProxyError", "RemoteProtocolError"})


def _short(error: BaseException) -> str:
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 300 else text[:299] + "…"
