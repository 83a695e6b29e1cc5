"""The package's three wings keep apart: a kernel never loads the server or the model."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.fast

KERNEL_MODULES = ["client", "streaming", "discovery", "relay", "cli", "errors", "context", "widget"]


def test_the_kernel_wing_loads_no_server_handler_and_no_llama_cpp():
    code = (
        "import sys\n"
        + "".join(f"import jupyter_llmchat.kernel.{name}\n" for name in KERNEL_MODULES)
        + "import jupyter_llmchat as chat\n"
        "chat.ask, chat.broadcast, chat.connect, chat.ChatWidget\n"
        "bad = sorted(m for m in sys.modules if m.startswith(('jupyter_llmchat.server', 'jupyter_llmchat.engine',"
        " 'llama_cpp', 'jupyter_server', 'tornado.web')))\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_the_public_names_stay_where_users_import_them():
    import jupyter_llmchat as chat

    for name in ("ChatWidget", "broadcast", "ask", "aask", "connect", "new_thread", "stats", "rooms", "history"):
        assert getattr(chat, name).__module__.startswith("jupyter_llmchat.kernel."), name
