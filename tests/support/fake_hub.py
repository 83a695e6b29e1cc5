"""A Hugging Face Hub on 127.0.0.1 speaking what `huggingface_hub` asks of it, and an Ollama store.

`FakeHub` answers the two requests `hf:` references cost: the repository tree
(`GET /api/models/{repo}/tree/{revision}`) and each file (`HEAD`/`GET /{repo}/resolve/{revision}/{path}`,
with `X-Repo-Commit`, `ETag`, `Content-Length` and `Range`), and the Hub's error headers
(`X-Error-Code: RepoNotFound | EntryNotFound`). Every request is kept in `requests`, so a test
sees which files were fetched (a decoy must never be). `slow` paces the bytes (progress),
`truncate` serves fewer bytes than the file has (a download cut short).

`tiny_gguf` writes a small valid GGUF with the `gguf` package (the stand-in backend never
loads it); `ollama_store` lays out Ollama's manifest + blob for a file, named by its sha256.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest

COMMIT = "0123456789abcdef0123456789abcdef01234567"
_RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")
_TREE = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)/tree/(?P<rev>[^/?]+)")
REPO = "org/tiny-GGUF"  # the `hub` fixture's repository


@dataclass
class FakeHub:
    """Repositories as {repo: {path in repo: local file}}."""

    repos: dict[str, dict[str, Path]] = field(default_factory=dict)
    slow: float = 0.0  # seconds between two chunks of a download
    chunk: int = 64 * 1024
    truncate: bool = False
    gated: dict[str, str] = field(default_factory=dict)  # repo -> the token it needs (`Authorization: Bearer …`)
    requests: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        hub = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_HEAD(self) -> None:
                hub._serve(self, body=False)

            def do_GET(self) -> None:
                hub._serve(self, body=True)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.02,), daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def fetched(self) -> list[str]:
        """The file paths downloaded (GET on resolve)."""
        return [path for method, path in self.requests if method == "GET" and "/resolve/" in path]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def _serve(self, handler: BaseHTTPRequestHandler, body: bool) -> None:
        path = handler.path.split("?", 1)[0]
        self.requests.append((handler.command, path))
        tree, resolve = _TREE.match(path), _RESOLVE.match(path)
        repo = (tree or resolve).group("repo") if (tree or resolve) else ""
        if repo in self.gated and handler.headers.get("Authorization") != f"Bearer {self.gated[repo]}":
            return _error(handler, 403, "GatedRepo", "Access to this repository is restricted")
        if tree:
            return self._tree(handler, tree.group("repo"))
        if not resolve or resolve.group("repo") not in self.repos:
            return _error(handler, 404, "RepoNotFound", "Repository not found")
        local = self.repos[resolve.group("repo")].get(resolve.group("path"))
        if local is None:
            return _error(handler, 404, "EntryNotFound", "Entry not found", commit=True)
        self._file(handler, local, body)

    def _tree(self, handler: BaseHTTPRequestHandler, repo: str) -> None:
        if repo not in self.repos:
            return _error(handler, 404, "RepoNotFound", "Repository not found")
        listing = [
            {"type": "file", "path": name, "size": local.stat().st_size, "oid": _etag(local)[:40]}
            for name, local in sorted(self.repos[repo].items())
        ]
        raw = json.dumps(listing).encode()
        handler.send_response(200)
        handler.send_header("Content-Type", "application/json")
        handler.send_header("Content-Length", str(len(raw)))
        handler.end_headers()
        handler.wfile.write(raw)

    def _file(self, handler: BaseHTTPRequestHandler, local: Path, body: bool) -> None:
        size = local.stat().st_size
        start = 0
        ranged = re.match(r"bytes=(\d+)-", handler.headers.get("Range", ""))
        if ranged and body:
            start = int(ranged.group(1))
        end = size if not (self.truncate and body) else start + (size - start) // 2
        handler.send_response(206 if start else 200)
        handler.send_header("X-Repo-Commit", COMMIT)
        handler.send_header("ETag", f'"{_etag(local)}"')
        handler.send_header("Accept-Ranges", "bytes")
        handler.send_header("Content-Length", str(end - start if body else size))
        if start:
            handler.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        handler.end_headers()
        if not body:
            return
        with local.open("rb") as fh:
            fh.seek(start)
            left = end - start
            while left > 0:
                data = fh.read(min(self.chunk, left))
                if not data:
                    break
                try:
                    handler.wfile.write(data)
                except (BrokenPipeError, ConnectionResetError):
                    return
                left -= len(data)
                if self.slow:
                    time.sleep(self.slow)


def _error(handler: BaseHTTPRequestHandler, status: int, code: str, message: str, commit: bool = False) -> None:
    raw = json.dumps({"error": message}).encode()
    handler.send_response(status)
    handler.send_header("X-Error-Code", code)
    handler.send_header("X-Error-Message", message)
    if commit:
        handler.send_header("X-Repo-Commit", COMMIT)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(raw)))
    handler.end_headers()
    if handler.command != "HEAD":
        handler.wfile.write(raw)


_ETAGS: dict[tuple[str, int], str] = {}


def _etag(path: Path) -> str:
    """The sha256 of the file, as the Hub's ETag of an LFS file is (cached per path and size)."""
    key = (str(path), path.stat().st_size)
    if key not in _ETAGS:
        _ETAGS[key] = sha256_of(path)
    return _ETAGS[key]


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def tiny_gguf(path: Path, *, template: str | None = "{{ messages }}", context: int = 2048, rows: int = 64) -> Path:
    """A small, valid GGUF (llama architecture, file type Q4_K_M, one float tensor)."""
    import gguf
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("tiny")
    writer.add_context_length(context)
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M)
    if template is not None:
        writer.add_chat_template(template)
    writer.add_tensor("token_embd.weight", np.zeros((rows, 32), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


def ollama_store(root: Path, name: str, tag: str, gguf_file: Path, digest: str | None = None) -> Path:
    """Ollama's layout for `gguf_file` as NAME:TAG under `root`, the blob named by the file's
    sha256 (`digest` when the caller knows it); returns the blob, a symbolic link to the file
    (the test's stand-in for what `ollama pull` would have written)."""
    digest = digest or sha256_of(gguf_file)
    blob = root / "blobs" / f"sha256-{digest}"
    blob.parent.mkdir(parents=True, exist_ok=True)
    if not blob.exists():
        blob.symlink_to(gguf_file)
    manifest = root / "manifests" / "registry.ollama.ai" / "library" / name / tag
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": "sha256:" + "0" * 64, "size": 2},
        "layers": [
            {"mediaType": "application/vnd.ollama.image.model", "digest": f"sha256:{digest}", "size": blob.stat().st_size},
            {"mediaType": "application/vnd.ollama.image.license", "digest": "sha256:" + "1" * 64, "size": 10},
        ],
    }))
    return blob


@pytest.fixture
def model_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty Hugging Face cache, Ollama store and home of this test (never the user's)."""
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("OLLAMA_MODELS", str(tmp_path / "ollama"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path


@pytest.fixture
def hub(model_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    """A fake Hub (HF_ENDPOINT) with REPO = {tiny-Q4_K_M.gguf (2 MB), tiny-Q8_0.gguf (the decoy), README.md}."""
    import huggingface_hub.constants

    wanted = tiny_gguf(model_dirs / "src" / "tiny-Q4_K_M.gguf", rows=16384)
    decoy = tiny_gguf(model_dirs / "src" / "tiny-Q8_0.gguf", rows=64)
    fake = FakeHub({REPO: {"tiny-Q4_K_M.gguf": wanted, "tiny-Q8_0.gguf": decoy, "README.md": decoy}})
    monkeypatch.setenv("HF_ENDPOINT", fake.url)
    # huggingface_hub reads 10 MB before it counts progress; a test file is 2 MB
    monkeypatch.setattr(huggingface_hub.constants, "DOWNLOAD_CHUNK_SIZE", 64 * 1024)
    yield fake
    fake.close()
