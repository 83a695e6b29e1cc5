"""What a GGUF file is, read from its header (the weights are never read).

Only the metadata and the tensor table are walked (`_read_header`): listing a 4 GB model
reads megabytes of it at most (the vocabulary). The names of quantizations are the `gguf`
package's tables. A split model (`-00001-of-00003.gguf`) is described by all its parts:
their sizes and parameters add up.
"""

from __future__ import annotations

import math
import mmap
import re
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GGUF_MAGIC = b"GGUF"
SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)


class NotGGUF(ValueError):
    """The file is missing, unreadable, or not a GGUF model."""


@dataclass(frozen=True)
class GGUFInfo:
    """One model as `jupyter llmchat models --json` lists it (with its reference)."""

    reference: str
    path: str
    size_bytes: int
    quantization: str | None
    parameters: int | None
    context_length: int | None
    chat_template: bool
    architecture: str | None = None
    name: str | None = None


def check_magic(path: Path) -> None:
    """`NotGGUF` unless `path` is a readable file that starts like a GGUF."""
    try:
        with path.open("rb") as fh:
            magic = fh.read(4)
    except FileNotFoundError:
        raise NotGGUF(f"no such file: {path}") from None
    except IsADirectoryError:
        raise NotGGUF(f"a directory, not a GGUF file: {path}") from None
    except OSError as error:
        raise NotGGUF(f"cannot read {path}: {error.strerror or error}") from None
    if magic != GGUF_MAGIC:
        raise NotGGUF(f"not a GGUF model file (it does not start with GGUF): {path}")  # its bytes are not shown


def split_parts(path: Path) -> list[Path]:
    """Every part of a split GGUF named by its first part; `[path]` for a whole file."""
    match = SPLIT.search(path.name)
    if match is None:
        return [path]
    count = int(match.group(2))
    stem = path.name[: match.start()]
    return [path.with_name(f"{stem}-{index:05d}-of-{count:05d}.gguf") for index in range(1, count + 1)]


def read_info(path: Path, reference: str | None = None) -> GGUFInfo:
    """The header facts of the GGUF at `path` (all its parts when split); `NotGGUF` if it is none."""
    parts = split_parts(path)
    size = parameters = 0
    first: _Header | None = None
    for part in parts:
        check_magic(part)
        try:
            header = _read_header(part)
        except (ValueError, struct.error, OSError, UnicodeDecodeError) as error:
            raise NotGGUF(f"not a readable GGUF file ({error}): {part}") from None
        size += part.stat().st_size
        parameters += sum(count for count, _ in header.tensors)
        first = first or header
    assert first is not None
    architecture = _text(first.fields.get("general.architecture"))
    return GGUFInfo(
        reference=str(path) if reference is None else reference,
        path=str(path),
        size_bytes=size,
        quantization=_quantization(first),
        parameters=parameters or None,
        context_length=_int(first.fields.get(f"{architecture}.context_length")) if architecture else None,
        chat_template=bool(first.fields.get("tokenizer.chat_template")),
        architecture=architecture,
        name=_text(first.fields.get("general.name")),
    )


@dataclass
class _Header:
    fields: dict[str, Any]  # scalars and strings; arrays are skipped (None)
    tensors: list[tuple[int, int]]  # (elements, ggml type) per tensor


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_MAX_STRING = 16 * 1024 * 1024  # a chat template is kilobytes; more is a broken header


def _read_header(path: Path) -> _Header:
    """Walk the key/value section and the tensor table, skipping arrays (the vocabulary).

    `gguf.GGUFReader` builds a numpy view of every array element, which takes tens of seconds
    on a 262k-token vocabulary; this reads the same header in a fraction of a second. The
    layout is the GGUF specification's (versions 2 and 3, little-endian).
    """
    with path.open("rb") as fh:
        data = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
    try:
        reader = _Cursor(data)
        reader.take(4)  # magic, checked by the caller
        version = reader.scalar("<I")
        if version not in (2, 3):
            raise ValueError(f"GGUF version {version} is not supported (2 and 3 are)")
        n_tensors, n_fields = reader.scalar("<Q"), reader.scalar("<Q")
        fields: dict[str, Any] = {}
        for _ in range(n_fields):
            key = reader.string()
            fields[key] = reader.value(reader.scalar("<I"))
        tensors = []
        for _ in range(n_tensors):
            reader.string()
            dims = [reader.scalar("<Q") for _ in range(reader.scalar("<I"))]
            kind = reader.scalar("<I")
            reader.scalar("<Q")  # offset of the data
            tensors.append((math.prod(dims), kind if len(dims) > 1 else -1))
        return _Header(fields, tensors)
    finally:
        data.close()


class _Cursor:
    def __init__(self, data: mmap.mmap) -> None:
        self.data, self.at = data, 0

    def take(self, size: int) -> bytes:
        if size < 0 or self.at + size > len(self.data):
            raise ValueError("the header runs past the end of the file")
        chunk = self.data[self.at : self.at + size]
        self.at += size
        return chunk

    def scalar(self, fmt: str) -> Any:
        return struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]

    def string(self) -> str:
        size = self.scalar("<Q")
        if size > _MAX_STRING:
            raise ValueError(f"a string of {size} bytes in the header")
        return self.take(size).decode("utf-8")

    def value(self, kind: int) -> Any:
        if kind in _SCALARS:
            return self.scalar(_SCALARS[kind])
        if kind == 8:
            return self.string()
        if kind == 9:
            item, count = self.scalar("<I"), self.scalar("<Q")
            if item == 8:  # strings (the vocabulary): hop over them, length by length
                at, data = self.at, self.data
                for _ in range(count):
                    at += 8 + struct.unpack_from("<Q", data, at)[0]
                if at > len(data):
                    raise ValueError("the header runs past the end of the file")
                self.at = at
            elif item in _SCALARS:
                self.take(struct.calcsize(_SCALARS[item]) * count)
            else:
                for _ in range(count):
                    self.value(item)
            return None
        raise ValueError(f"unknown GGUF value type {kind}")


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _quantization(header: _Header) -> str | None:
    """`general.file_type` by name (e.g. Q4_K_M), else the most common weight type (the
    names are the `gguf` package's tables, the ones llama.cpp's tools print)."""
    from gguf import GGMLQuantizationType, LlamaFileType

    file_type = _int(header.fields.get("general.file_type"))
    if file_type is not None:
        try:
            name = LlamaFileType(file_type).name
        except ValueError:
            name = ""
        if name and name != "GUESSED":
            return name.removeprefix("MOSTLY_").removeprefix("ALL_")
    counts: dict[int, int] = {}
    for elements, kind in header.tensors:
        if kind >= 0:
            counts[kind] = counts.get(kind, 0) + elements
    if not counts:
        return None
    kind = max(counts, key=counts.__getitem__)
    try:
        return GGMLQuantizationType(kind).name
    except ValueError:
        return None


def human_size(size: int) -> str:
    """Bytes as people read them: 1.1 GB, 253 MB."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}" if size < 10 * scale else f"{size / scale:.0f} {unit}"
    return f"{size} B"


def human_count(count: int | None) -> str:
    """A parameter count as model names say it: 270M, 1.5B."""
    if not count:
        return "?"
    for unit, scale in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= scale:
            return f"{count / scale:.1f}{unit}".replace(".0", "") if count < 10 * scale else f"{count / scale:.0f}{unit}"
    return str(count)
