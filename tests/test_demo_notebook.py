"""The demo notebook a newcomer runs first: every cell runs in a kernel started by a real
server, and its broadcasts and answers reach a member of the room."""

from __future__ import annotations

import warnings
from pathlib import Path

import nbformat
import pytest

from support.kernels import Member, llmchat_server, run_cell, server_kernel

DEMO = Path(__file__).resolve().parent.parent / "notebooks" / "demo.ipynb"


@pytest.mark.fast
def test_the_demo_notebook_is_valid_without_a_warning():
    """Every cell has an `id` (nbformat 4.5): Jupyter would otherwise add them, warning, on each read."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        notebook = nbformat.read(DEMO, as_version=4)
        nbformat.validate(notebook)
    assert all(cell.get("id") for cell in notebook.cells)


def test_every_demo_cell_runs_and_reaches_the_room(tmp_path):
    notebook = nbformat.read(DEMO, as_version=4)
    cells = [cell.source for cell in notebook.cells if cell.cell_type == "code"]
    assert "ChatWidget(room=\"demo\")" in cells[0]
    with llmchat_server(tmp_path / "root", tmp_path / "runtime", ["--LLMChat.max_tokens=12"]) as server:
        member = Member(server, "demo")
        with server_kernel(server) as kernel:
            for source in cells:
                run_cell(kernel, source)
        texts = []
        while not any(t.startswith("training: epoch 3/3") for t in texts):
            frame = member.next(lambda f: f["type"] == "Text")
            texts.append(frame["data"]["content"])
        assert texts[0] == "Hint: exercise 3 needs a dict, not a list."
        history = server.get("llmchat/api/rooms/demo/messages")["messages"]
        kinds = [m["data"]["author"]["kind"] for m in history]
        assert "assistant" in kinds and kinds.count("bot") >= 5
        member.close()
