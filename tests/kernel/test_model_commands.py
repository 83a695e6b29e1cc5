"""`jupyter llmchat models | pull | use` (fast tier: a fake Hub, a fake Ollama store, the stand-in server)."""

from __future__ import annotations

import asyncio
import io
import json
from pathlib import Path
from typing import Any

import pytest

from support.fake_hub import REPO, hub, model_dirs, ollama_store, tiny_gguf  # noqa: F401 (fixtures)
from jupyter_llmchat.kernel import cli
from jupyter_llmchat.models import resolve

pytestmark = pytest.mark.fast


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def machine(hub: Any, model_dirs: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """A GGUF in each place `models` looks: packaged, Hugging Face cache, Ollama, LM Studio."""
    packaged = tiny_gguf(model_dirs / "packaged" / "gemma-3-270m-q4_k_m.gguf", template=None)
    monkeypatch.setattr("jupyter_llmchat.kernel.model_commands.packaged_file", lambda: packaged)
    cached = Path(resolve(f"hf:{REPO}").path)
    blob = ollama_store(model_dirs / "ollama", "tiny", "1b", tiny_gguf(model_dirs / "src" / "o.gguf", rows=128))
    studio = model_dirs / "home" / ".lmstudio" / "models" / "someone" / "m-GGUF"
    lm = tiny_gguf(studio / "m-Q8_0.gguf", rows=256, context=8192)
    tiny_gguf(studio / "mmproj-m-f16.gguf", rows=8)  # a vision projector: not a model
    (studio / "broken.gguf").write_text("not a gguf")  # not readable: left out
    return {"packaged": packaged, "cached": cached, "ollama": blob, "lmstudio": lm}


def test_models_lists_every_gguf_on_the_machine_from_its_header(machine):
    code, out, err = run("models", "--json")
    assert code == 0, err
    listed = {item["path"]: item for item in json.loads(out)}
    assert set(listed) == {str(path) for path in machine.values()}
    assert listed[str(machine["packaged"])] == {
        "reference": "", "path": str(machine["packaged"]), "size_bytes": machine["packaged"].stat().st_size,
        "quantization": "Q4_K_M", "parameters": 64 * 32, "context_length": 2048, "chat_template": False,
    }
    assert listed[str(machine["cached"])]["reference"] == f"hf:{REPO}:Q4_K_M"
    assert listed[str(machine["ollama"])]["reference"] == "ollama:tiny:1b"
    studio = listed[str(machine["lmstudio"])]
    assert studio["reference"] == str(machine["lmstudio"]) and studio["context_length"] == 8192 and studio["chat_template"]
    code, table, _ = run("models")
    assert table.splitlines()[0].split() == ["REFERENCE", "SIZE", "QUANT", "PARAMS", "CONTEXT", "CHAT", "TEMPLATE", "PATH"]
    assert f"hf:{REPO}:Q4_K_M" in table and "ollama:tiny:1b" in table and '(packaged)' in table


def test_pull_downloads_with_a_progress_bar_and_says_where(hub, model_dirs):
    code, out, err = run("pull", f"hf:{REPO}")
    assert code == 0, err
    assert out.startswith(f"hf:{REPO}:Q4_K_M: {model_dirs / 'hf' / 'hub'}") and "Q4_K_M" in out.splitlines()[1]
    assert "downloading tiny-Q4_K_M.gguf" in err and "100%" in err
    code, out, err = run("pull", "hf:org/missing-GGUF")
    assert code == 1 and "no Hugging Face repository org/missing-GGUF" in err


@pytest.fixture
def llmchat_config(model_dirs: Path) -> dict[str, Any]:
    return {"moderators": ["ada"]}


async def test_use_switches_the_server_and_waits_until_the_new_model_answers(chat_server, jp_http_port, jp_base_url, model_dirs):
    ollama_store(model_dirs / "ollama", "tiny", "1b", tiny_gguf(model_dirs / "src" / "o.gguf"))
    url = f"http://127.0.0.1:{jp_http_port}{jp_base_url}"
    code, out, err = await asyncio.to_thread(run, "--url", url, "--token", "tok-bob", "use", "ollama:tiny:1b")
    assert code == 1 and "only a moderator may switch the model" in err
    code, out, err = await asyncio.to_thread(run, "--url", url, "--token", "tok-ada", "use", "ollama:tiny:1b")
    assert code == 0, err
    assert out.strip() == "model: stand-in (ollama:tiny:1b, loaded)"
    code, out, err = await asyncio.to_thread(run, "--url", url, "--token", "tok-ada", "use", "ollama:nope")
    assert code == 1 and "could not switch to ollama:nope: no Ollama model nope:latest" in err
