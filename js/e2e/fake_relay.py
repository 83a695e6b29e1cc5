"""A fake llmchat server inside the kernel, plugged into ChatWidget's kernel relay.

Used by the end-to-end tests to drive the real widget in a real browser without the server
extension: it answers Join/Text/Generate/Cancel/Stats/Ping like the transcript in docs/protocol.md.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

from jupyter_llmchat import ChatWidget

USER = {"username": "ada", "name": "Ada"}
_state: dict[str, Any] = {"seq": 0, "n": 0, "cancelled": set()}
_lock = threading.Lock()
# Switches a test flips from the kernel: the model still loading (Welcome/Stats say so, with a
# download 43 % done, and Generate gets 503), the server away (Joins get 503 until it is back).
FAKE: dict[str, Any] = {"loading": False, "down": False}
DOWNLOADING = "downloading fake-model-q4_k_m.gguf: 43 %"


def fake_model() -> dict[str, Any]:
    """`Welcome.model` / `Stats.model` as the server says them: downloading, or loaded."""
    loading = FAKE["loading"]
    return {"name": "fake-model", "loaded": not loading, "n_ctx": 512, "parallel": 1,
            "reference": "hf:fake/fake-model-GGUF:Q4_K_M", "state": "downloading" if loading else "loaded",
            "progress": 0.43 if loading else None, "detail": DOWNLOADING if loading else "", "error": None}
_widgets: list[ChatWidget] = []


def fake_drop() -> None:
    """The server goes away: every relayed connection closes, Joins fail until `fake_up()`."""
    FAKE["down"] = True
    for widget in _widgets:
        widget._send_to_front_end({"kind": "relay_closed", "code": 1006, "reason": "server went away"})


def fake_up() -> None:
    FAKE["down"] = False


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def fake_relay(widget: ChatWidget, frame: dict[str, Any]) -> None:
    kind = frame.get("type")
    rid = frame.get("id")
    room = frame.get("room") or widget.room
    data = frame.get("data") or {}
    out = widget.relay_to_front_end
    if widget not in _widgets:
        _widgets.append(widget)

    def event(typ: str, payload: dict[str, Any]) -> None:
        with _lock:
            _state["seq"] += 1
            seq = _state["seq"]
        out({"type": typ, "room": room, "seq": seq, "data": payload})

    if kind == "Join" and FAKE["down"]:
        out({"type": "Error", "id": rid, "data": {"message": "server unreachable", "code": 503}})
    elif kind == "Join":
        out({
            "type": "Welcome",
            "data": {
                "client_id": "kernel-1",
                "user": USER,
                "protocol": "llmchat.v1",
                "server": {"version": "fake"},
                "model": fake_model(),
                "limits": {"message_size_limit": 1048576, "max_tokens": 64},
            },
        })
        out({"type": "Joined", "id": rid, "room": room,
             "data": {"seq": _state["seq"], "epoch": "fake", "members": [USER, {"username": "bob", "name": "Bob"}]}})
        if "since" not in data:
            history = [{
                "type": "Text", "room": room, "seq": 0,
                "data": {"message_id": "h0", "content": "Welcome to **the fake room**.",
                         "author": {"username": "system", "name": "system", "kind": "system"}, "created": _now()},
            }]
            out({"type": "History", "id": rid, "room": room,
                 "data": {"messages": history, "head_seq": _state["seq"], "epoch": "fake"}})
    elif kind == "Text":
        _state["n"] += 1
        event("Text", {"message_id": f"t{_state['n']}", "content": data.get("content", ""),
                       "author": {**USER, "kind": "user"}, "created": _now()})
    elif kind == "Generate" and FAKE["loading"]:
        out({"type": "Error", "id": rid, "data": {"message": f"model not available: {DOWNLOADING}", "code": 503}})
    elif kind == "Generate" and str(data.get("prompt", "")).startswith("overload"):
        out({"type": "Error", "id": rid, "data": {"message": "generation queue full, try again later", "code": 429}})
    elif kind == "Generate":
        _state["n"] += 1
        mid = f"a{_state['n']}"
        prompt = str(data.get("prompt", ""))
        queued = prompt.startswith("queued")
        private = "room" not in frame  # a private completion: tokens to this connection only
        out({"type": "Ack", "id": rid, "data": {"message_id": mid, "queue_position": 2 if queued else 1}})
        if not private:
            event("Text", {"message_id": f"p{_state['n']}", "content": data.get("prompt", ""),
                           "author": {**USER, "kind": "user"}, "created": _now()})
        answer = REPLIES.get(prompt, f"You said: {prompt}. Here is `code` and a [link](https://example.org/x).")
        slow = prompt.startswith("slow")

        def token(payload: dict[str, Any]) -> None:
            if private:
                out({"type": "Token", "id": rid, "data": payload})
            else:
                event("Token", payload)

        def stream() -> None:
            if queued:
                time.sleep(4)  # two requests ahead of this one
            words = answer.split(" ")
            reason = "stop"
            for i, w in enumerate(words):
                if mid in _state["cancelled"]:
                    reason = "cancelled"
                    break
                token({"message_id": mid, "index": i, "text": (" " if i else "") + w, "is_final": False})
                time.sleep(0.5 if slow else 0.02)
            token({"message_id": mid, "index": len(words), "text": "", "is_final": True,
                   "finish_reason": reason, "usage": {"prompt_tokens": 5, "completion_tokens": len(words)},
                   "timings": {"queue_ms": 3, "ttft_ms": 42, "tokens_per_second": 123.4}})

        threading.Thread(target=stream, daemon=True).start()
    elif kind == "Cancel":
        _state["cancelled"].add(data.get("message_id"))
    elif kind == "Stats":
        out({"type": "Stats", "id": rid, "data": {"model": {**fake_model(), "queue_depth": 0, "active_sequences": 0}}})
    elif kind == "Ping":
        out({"type": "Pong", "id": rid, "data": {}})
    elif kind == "Leave":
        out({"type": "Left", "id": rid, "room": room, "data": {"seq": _state["seq"], "epoch": "fake", "members": []}})


REPLIES = {
    "xss": "<img src=x onerror=alert(1)> [click](javascript:alert(2)) <script>alert(3)</script> "
           "![pixel](https://evil.example/p.png) [bank](https://evil.example/login)",
    "code": "Here:\n\n```python\nprint('hi')\n```\n",
}

ChatWidget.relay_handler = fake_relay
