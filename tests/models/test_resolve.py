"""From a reference to a GGUF on disk: parsing, picking the file, and every way it can fail.

Against a local fake Hub (tests/support/fake_hub.py) and a fake Ollama store, with no server: each
failure must be one sentence a user can act on.
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import pytest

from support.fake_hub import REPO, hub, model_dirs, ollama_store, tiny_gguf  # noqa: F401 (fixtures)
from jupyter_llmchat.models import BadReference, ModelError, parse_reference, resolve
from jupyter_llmchat.models.hub import choose, quant_of

pytestmark = pytest.mark.fast


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("", ""),
        ("hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF", "hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF"),
        ("hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF:q4_k_m", "hf:Qwen/Qwen2.5-1.5B-Instruct-GGUF:Q4_K_M"),
        ("hf:ggml-org/gemma-3-1b-it-GGUF/gemma-3-1b-it-Q4_K_M.gguf", "hf:ggml-org/gemma-3-1b-it-GGUF/gemma-3-1b-it-Q4_K_M.gguf"),
        ("ollama:qwen2.5", "ollama:qwen2.5:latest"),
        ("ollama:qwen2.5:1.5b", "ollama:qwen2.5:1.5b"),
        ("/models/a.gguf", "/models/a.gguf"),
    ],
)
def test_references_parse_to_their_canonical_form(text, canonical):
    assert str(parse_reference(text)) == canonical


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("hf:Qwen", "expected hf:ORG/REPO"),
        ("hf:a/b/c.bin", "must be a .gguf"),
        ("hf:a/b/../x.gguf", "must be a .gguf inside the repository"),
        ("hf:a/b:Q4 K", "bad quantization"),
        ("ollama:", "expected ollama:NAME"),
        ("ollama:a:b:c", "expected ollama:NAME"),
        ("s3:bucket/model.gguf", "unknown model reference"),
    ],
)
def test_a_bad_reference_says_which_forms_there_are(text, says):
    with pytest.raises(BadReference, match=says):
        parse_reference(text)


FILES = {
    "m-Q2_K.gguf": 1, "m-Q4_K_M.gguf": 5, "m-Q4_K_S.gguf": 4, "m-Q8_0.gguf": 9, "mmproj-m-f16.gguf": 2,
    "big-Q6_K-00001-of-00002.gguf": 10, "big-Q6_K-00002-of-00002.gguf": 10, "README.md": 1,
}


def test_the_file_is_picked_by_quantization_else_q4_k_m_else_the_smallest():
    assert choose(FILES, parse_reference("hf:o/r")).files == ("m-Q4_K_M.gguf",)
    assert choose(FILES, parse_reference("hf:o/r:q4_k_s")).files == ("m-Q4_K_S.gguf",)
    assert choose(FILES, parse_reference("hf:o/r:Q6_K")).files == ("big-Q6_K-00001-of-00002.gguf", "big-Q6_K-00002-of-00002.gguf")
    without = {k: v for k, v in FILES.items() if "Q4_K_M" not in k}
    assert choose(without, parse_reference("hf:o/r")).files == ("m-Q2_K.gguf",)  # smallest; never the projector
    with pytest.raises(ModelError, match="no IQ2_XS GGUF in o/r; it has: Q2_K, Q4_K_M, Q4_K_S, Q6_K, Q8_0"):
        choose(FILES, parse_reference("hf:o/r:IQ2_XS"))
    assert [quant_of(n) for n in ("Llama-3.2-3B-Instruct-Q4_K_M.gguf", "gemma-3-270m-q4_k_m.gguf", "x-BF16.gguf")] == ["Q4_K_M", "Q4_K_M", "BF16"]


def test_an_hf_download_reports_progress_and_fetches_only_the_chosen_file(hub, model_dirs):
    seen: list[tuple[int, int, str]] = []
    found = resolve(f"hf:{REPO}", lambda *report: seen.append(report))
    assert found.reference == f"hf:{REPO}:Q4_K_M" and found.name == "tiny-Q4_K_M"
    assert found.path.startswith(str(model_dirs / "hf" / "hub" / "models--org--tiny-GGUF" / "snapshots"))
    assert hub.fetched() == [f"/{REPO}/resolve/main/tiny-Q4_K_M.gguf"]  # never the decoy, nor the README
    size = Path(found.path).stat().st_size
    assert seen[-1] == (size, size, "downloading tiny-Q4_K_M.gguf") and len(seen) > 10
    again = resolve(f"hf:{REPO}")  # cached: no second download
    assert again == found and hub.fetched() == [f"/{REPO}/resolve/main/tiny-Q4_K_M.gguf"]


def test_a_split_gguf_is_downloaded_whole_and_named_by_its_first_part(hub, model_dirs):
    parts = {
        f"big-Q4_K_M-0000{i}-of-00002.gguf": tiny_gguf(model_dirs / "src" / f"part{i}.gguf", rows=4096 * i) for i in (1, 2)
    }
    hub.repos["org/big-GGUF"] = {**parts, "big-Q8_0.gguf": model_dirs / "src" / "part1.gguf"}
    seen: list[tuple[int, int, str]] = []
    found = resolve("hf:org/big-GGUF", lambda *report: seen.append(report))
    assert found.path.endswith("/big-Q4_K_M-00001-of-00002.gguf") and found.reference == "hf:org/big-GGUF:Q4_K_M"
    assert sorted(hub.fetched()) == [f"/org/big-GGUF/resolve/main/{name}" for name in sorted(parts)]
    total = sum(path.stat().st_size for path in parts.values())
    assert seen[-1] == (total, total, "downloading big-Q4_K_M-00002-of-00002.gguf")  # one progress across both files
    assert all(done <= total for done, _, _ in seen) and [done for done, _, _ in seen] == sorted(done for done, _, _ in seen)
    from jupyter_llmchat.models.gguf_info import read_info

    info = read_info(Path(found.path))
    assert info.size_bytes == total and info.parameters == (4096 + 8192) * 32  # both parts counted


def test_a_gated_repository_needs_hf_token(hub, model_dirs, monkeypatch):
    hub.gated[REPO] = "hf_secret"
    monkeypatch.delenv("HF_TOKEN", raising=False)
    with pytest.raises(ModelError, match=f"{REPO} is gated: accept its licence on its Hugging Face page, then set HF_TOKEN"):
        resolve(f"hf:{REPO}")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    assert resolve(f"hf:{REPO}").reference == f"hf:{REPO}:Q4_K_M"


def fill_disk(monkeypatch: pytest.MonkeyPatch) -> None:
    """The disk fills after 256 kB of the download (what a full disk does to a write)."""
    import huggingface_hub.file_download as download

    real = download.http_get

    class FullDisk:
        def __init__(self, inner: Any) -> None:
            self.inner, self.written = inner, 0

        def write(self, data: bytes) -> int:
            self.written += len(data)
            if self.written > 256 * 1024:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.inner.write(data)

        def __getattr__(self, name: str) -> Any:
            return getattr(self.inner, name)

    monkeypatch.setattr(download, "http_get", lambda url, temp_file, **kw: real(url, FullDisk(temp_file), **kw))


FAILURES = {
    "bad reference": ("hf:not-a-repo", "bad Hugging Face reference 'hf:not-a-repo'"),
    "no such repository (404)": ("hf:org/missing-GGUF", "no Hugging Face repository org/missing-GGUF on http://127.0.0.1:"),
    "no such file": (f"hf:{REPO}/absent.gguf", f"no file absent.gguf in {REPO}"),
    "no such quantization": (f"hf:{REPO}:Q5_K_M", f"no Q5_K_M GGUF in {REPO}; it has: Q4_K_M, Q8_0"),
    "a repository without GGUFs": ("hf:org/weights", "org/weights holds no GGUF file"),
    "truncated download": (f"hf:{REPO}", "the download of tiny-Q4_K_M.gguf was cut short"),
    "not a GGUF": ("hf:org/text-GGUF", "notes-Q4_K_M.gguf from org/text-GGUF is not a GGUF model file"),
    "full disk": (f"hf:{REPO}", "disk full while downloading tiny-Q4_K_M.gguf into"),
    "offline, not cached": (f"hf:{REPO}", f"offline (HF_HUB_OFFLINE is set), and {REPO} is not in the Hugging Face cache"),
    "no Hub, not cached": (f"hf:{REPO}", f"cannot reach http://127.0.0.1:1 ("),
    "missing path": ("/nonexistent/model.gguf", "no such file: /nonexistent/model.gguf"),
    "a path that is no GGUF": ("NOTES", "not a GGUF model file (it does not start with GGUF)"),
    "no Ollama store": ("ollama:qwen2.5:7b", "no Ollama model store at"),
    "no such Ollama model": ("ollama:qwen2.5:7b", "no Ollama model qwen2.5:7b in"),
}


@pytest.mark.parametrize("case", list(FAILURES))
def test_each_failure_is_one_sentence_that_says_why(case, hub, model_dirs, monkeypatch):
    text, says = FAILURES[case]
    notes = model_dirs / "notes.txt"
    notes.write_text("these are notes, not weights\n" * 100)
    hub.repos["org/text-GGUF"] = {"notes-Q4_K_M.gguf": notes}
    hub.repos["org/weights"] = {"model.safetensors": notes}
    if case == "truncated download":
        hub.truncate = True
    if case == "full disk":
        fill_disk(monkeypatch)
    if case == "offline, not cached":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    if case == "no Hub, not cached":
        monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:1")
        monkeypatch.setattr("huggingface_hub.utils._http.time.sleep", lambda seconds: None)  # its 5 retries, at once
    if case == "no such Ollama model":
        ollama_store(model_dirs / "ollama", "tiny", "latest", tiny_gguf(model_dirs / "src" / "t.gguf"))
    with pytest.raises(ModelError) as failure:
        resolve(str(notes) if text == "NOTES" else text)
    assert says in str(failure.value)
    if case in ("truncated download", "full disk"):
        hub.truncate = False
        monkeypatch.undo()  # the disk has room again, the Hub serves whole files: the download resumes
        monkeypatch.setenv("HF_HOME", str(model_dirs / "hf"))
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        assert resolve(text).reference == f"hf:{REPO}:Q4_K_M"


def test_an_ollama_reference_is_the_blob_in_its_store(model_dirs):
    gguf = tiny_gguf(model_dirs / "src" / "tiny.gguf")
    blob = ollama_store(model_dirs / "ollama", "tiny", "1b", gguf)
    found = resolve("ollama:tiny:1b")
    assert found.path == str(blob) and found.reference == "ollama:tiny:1b" and found.name == "tiny:1b"
    assert blob.name == "sha256-" + __import__("hashlib").sha256(gguf.read_bytes()).hexdigest()
