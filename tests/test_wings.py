"""The package's three wings keep apart: a kernel never loads the server or the model."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.fast

KERNEL_MODULES = ["client", "rest", "api", "streaming", "discovery", "relay", "cli", "errors", "context", "widget", "model_commands"]
MODEL_MODULES = ["reference", "hub", "ollama", "gguf_info", "catalogue", "resolve"]


def test_the_kernel_wing_loads_no_server_handler_and_no_llama_cpp():
    code = (
        "import sys\n"
        + "".join(f"import jupyter_llmchat.kernel.{name}\n" for name in KERNEL_MODULES)
        + "".join(f"import jupyter_llmchat.models.{name}\n" for name in MODEL_MODULES)  # the shared models/ too
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


SEAM_MODULES = [
    "room_bus.bus", "room_bus.memory_bus", "room_bus.rooms", "room_bus.store", "room_bus.redis_bus",
    "room_bus.redis_fanout", "room_bus.redis_keys", "backends.model_backend", "backends.openai_backend", "backends.openai_requests",
    "backends.managed_model",
]


def test_the_two_seams_load_no_tornado_handler():
    code = (
        "import sys\n"
        + "".join(f"import jupyter_llmchat.{name}\n" for name in SEAM_MODULES)
        + "bad = sorted(m for m in sys.modules if m.startswith(('jupyter_llmchat.server.handlers', 'jupyter_llmchat.server.rest_handlers', 'jupyter_llmchat.server.routes',"
        " 'jupyter_llmchat.server.extension', 'jupyter_server', 'tornado.web', 'tornado.websocket')))\n"
        "print(bad)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
