"""The file format of a saved KV state, and reading it back with every check.

A file is `MAGIC`, a 4-byte header length, a JSON header, the prefix's tokens (int32) and
llama.cpp's sequence state (`llama_state_seq_get_data`). The header says what the state is
only valid for: this format, this llama.cpp build, this model file, these tokens; a CRC32
covers tokens and state, so a file cut short or flipped is never handed to llama.cpp.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np

MAGIC = b"LLMCHAT-KV\n"
FORMAT = 1
SUFFIX = ".kv"
_LEN = struct.Struct("<I")
_MAX_HEADER = 1 << 20  # a header longer than this is not ours
_IDENTITY_BYTES = 4 << 20  # hashed from the start of the GGUF: its header (metadata, tensor table)


class BadFile(ValueError):
    """A saved state that must not be used; the message says why (one log line)."""


def llama_version() -> str:
    """The llama.cpp build a state is only valid for (pinned with llama-cpp-python's version)."""
    import llama_cpp

    return str(llama_cpp.__version__)


def model_identity(path: Path) -> str:
    """The model file's size and a hash of its header: a state belongs to exactly one model."""
    size = path.stat().st_size
    with path.open("rb") as fh:
        digest = hashlib.blake2b(fh.read(_IDENTITY_BYTES), digest_size=12).hexdigest()
    return f"{size}-{digest}"


def prefix_key(identity: str, tokens: list[int] | np.ndarray) -> str:
    """The file name of a prefix's state: the model and the prefix's tokens."""
    data = np.asarray(tokens, dtype=np.int32).tobytes()
    return hashlib.blake2b(identity.encode() + b"\0" + data, digest_size=16).hexdigest()


@dataclass
class Entry:
    """One saved state as the index knows it (from its header)."""

    key: str
    n_tokens: int
    size: int  # bytes of the file
    last_used: float  # wall time it was last saved or restored (recency: least recently used goes)
    room: str | None = None
    holds: tuple[str, ...] = ()  # message ids whose text is in the prefix
    thread: str | None = None  # the conversation (cache key) it continues
    model: str = ""  # the model identity it was saved for


def encode_header(entry: Entry, identity: str, payload_bytes: int, checksum: int) -> bytes:
    header = {
        "format": FORMAT,
        "llama_cpp": llama_version(),
        "model": identity,
        "n_tokens": entry.n_tokens,
        "payload_bytes": payload_bytes,
        "crc32": checksum,
        "saved_at": entry.last_used,
        "room": entry.room,
        "holds": list(entry.holds),
        "thread": entry.thread,
    }
    raw = json.dumps(header, separators=(",", ":")).encode()
    return MAGIC + _LEN.pack(len(raw)) + raw


def write_file(directory: Path, entry: Entry, identity: str, tokens: np.ndarray, payload: memoryview) -> int:
    """Write under a temporary name, then rename: a reader never sees a partial file, even
    another server's on the same directory. Returns the file's size."""
    body = tokens.astype(np.int32).tobytes()
    crc = zlib.crc32(payload, zlib.crc32(body))
    head = encode_header(entry, identity, len(payload), crc)
    final = directory / (entry.key + SUFFIX)
    tmp = directory / f".{entry.key}.{os.getpid()}.{id(payload):x}.tmp"
    try:
        with tmp.open("wb") as fh:
            fh.write(head)
            fh.write(body)
            fh.write(payload)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return len(head) + len(body) + len(payload)


def read_header(path: Path) -> tuple[dict, int]:
    """The header and the offset of the tokens; `BadFile` if it is not a state of ours."""
    with path.open("rb") as fh:
        return _header_of(fh)


def _header_of(fh: BinaryIO) -> tuple[dict, int]:
    start = fh.read(len(MAGIC) + _LEN.size)
    if len(start) < len(MAGIC) + _LEN.size or not start.startswith(MAGIC):
        raise BadFile("not a saved KV state")
    (n,) = _LEN.unpack(start[len(MAGIC) :])
    if n > _MAX_HEADER:
        raise BadFile("header too long")
    raw = fh.read(n)
    try:
        header = json.loads(raw)
    except ValueError:
        raise BadFile("unreadable header") from None
    if not isinstance(header, dict):
        raise BadFile("unreadable header")
    return header, len(start) + n


def entry_of(path: Path, header: dict) -> Entry:
    """An index entry from a file's header (for files this process did not write)."""
    try:
        return Entry(
            key=path.name.removesuffix(SUFFIX),
            n_tokens=int(header["n_tokens"]),
            size=path.stat().st_size,
            last_used=float(header.get("saved_at", 0.0)),
            room=header.get("room"),
            holds=tuple(str(m) for m in header.get("holds") or ()),
            thread=header.get("thread"),
            model=str(header.get("model", "")),
        )
    except (KeyError, TypeError, ValueError):
        raise BadFile("incomplete header") from None


def check_header(header: dict, identity: str | None = None) -> None:
    """`BadFile` unless the state was saved by this format and llama.cpp build (and, given
    `identity`, for this model). Another model's states are not bad: they wait for a switch
    back, and are never looked up by this one (the model is part of every file's name)."""
    if header.get("format") != FORMAT:
        raise BadFile(f"format {header.get('format')!r}, not {FORMAT}")
    if header.get("llama_cpp") != llama_version():
        raise BadFile(f"saved by llama.cpp {header.get('llama_cpp')!r}, this is {llama_version()}")
    if identity is not None and header.get("model") != identity:
        raise BadFile("saved for another model file")


def read_state(path: Path, identity: str, tokens: list[int]) -> bytearray:
    """The state saved for exactly `tokens`, every check passed; `BadFile` otherwise.

    Header, size and body come from one open file: another server may replace the file by
    name at any moment (a rename), and parts of two versions would not fit together.
    """
    with path.open("rb") as fh:
        header, offset = _header_of(fh)
        check_header(header, identity)
        n = len(tokens)
        if header.get("n_tokens") != n:
            raise BadFile("token count differs from its index entry")
        size = int(header.get("payload_bytes", -1))
        expected = offset + 4 * n + size
        actual = os.fstat(fh.fileno()).st_size
        if size < 0 or actual != expected:
            raise BadFile(f"truncated or padded ({actual} bytes, header says {expected})")
        body = fh.read(4 * n)
        payload = bytearray(size)
        got = fh.readinto(payload)
    if got != size or len(body) != 4 * n:
        raise BadFile("truncated")
    if zlib.crc32(payload, zlib.crc32(body)) != header.get("crc32"):
        raise BadFile("checksum mismatch")
    if not np.array_equal(np.frombuffer(body, dtype=np.int32), np.asarray(tokens, dtype=np.int32)):
        raise BadFile("tokens differ from the prompt (hash collision)")
    return payload
