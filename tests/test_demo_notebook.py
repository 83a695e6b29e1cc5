"""The demo notebook a newcomer runs first: every cell runs in a kernel started by a real
server, and its broadcasts and answers reach a member of the room."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import warnings
from pathlib import Path

import nbformat
import pytest

from support.kernels import Member, llmchat_server, run_cell, server_kernel
from support.servers import free_port, terminate

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


def test_the_readme_command_prints_the_address_of_the_demo_notebook(tmp_path):
    """Without a browser, the URL the terminal prints must land on the demo, not the file browser."""
    repo = DEMO.parent.parent
    readme = (repo / "README.md").read_text()
    command = re.search(r"\.venv/bin/jupyter (lab [^\n]*)", readme)
    assert command, "the README's Try it command runs jupyter lab"
    port = free_port()
    args = [sys.executable, "-m", "jupyter", *shlex.split(command.group(1)), "--no-browser", f"--port={port}", "--ServerApp.port_retries=0"]
    log_path = tmp_path / "lab.log"
    with open(log_path, "wb") as log:
        lab = subprocess.Popen(args, cwd=repo, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        printed = None
        while printed is None and time.monotonic() < deadline and lab.poll() is None:
            printed = re.search(rf"http://127\.0\.0\.1:{port}/\S+", log_path.read_text())
            time.sleep(0.2)
        assert printed, log_path.read_text()[-3000:]
        url = urllib.parse.urlsplit(printed.group(0))
        assert url.path == "/lab/tree/notebooks/demo.ipynb" and url.query.startswith("token="), printed.group(0)
        # What Lab asks for to open it: the notebook at that path under the server's root.
        contents = f"http://127.0.0.1:{port}/api/contents{url.path.removeprefix('/lab/tree')}?content=0&{url.query}"
        with urllib.request.urlopen(contents, timeout=10) as response:
            assert json.loads(response.read())["type"] == "notebook"
    finally:
        terminate(lab, 30)
