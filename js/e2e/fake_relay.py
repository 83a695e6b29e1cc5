"""A fake llmchat server inside the kernel, plugged into ChatWidget's kernel relay.

Used by the end-to-end tests to drive the real widget in a real browser without the server
extension: it answers Join/Text/Generate/Cancel/Stats/Ping like the SPEC's transcript.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any

from jupyter_llmchat.widget import ChatWidget

USER = {"username": "ada", "name": "Ada"}
_state: dict[str, Any] = {"seq": 0, "n": 0, "cancelled": set()}
_lock = threading.Lock()


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def fake_relay(widget: ChatWidget, frame: dict[str, Any]) -> None:
    kind = frame.get("type")
    rid = frame.get("id")
    room = frame.get("room") or widget.room
    data = frame.get("data") or {}
    out = widget.relay_to_front_end

    def event(typ: str, payload: dict[str, Any]) -> None:
        with _lock:
            _state["seq"] += 1
            seq = _state["seq"]
        out({"type": typ, "room": room, "seq": seq, "data": payload})

    if kind == "Join":
        out({
            "type": "Welcome",
            "data": {
                "client_id": "kernel-1",
                "user": USER,
                "protocol": "llmchat.v1",
                "server": {"version": "fake"},
                "model": {"name": "fake-model", "loaded": True, "n_ctx": 512, "parallel": 1},
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
    elif kind == "Generate":
        _state["n"] += 1
        mid = f"a{_state['n']}"
        out({"type": "Ack", "id": rid, "data": {"message_id": mid, "queue_position": 1}})
        event("Text", {"message_id": f"p{_state['n']}", "content": data.get("prompt", ""),
                       "author": {**USER, "kind": "user"}, "created": _now()})
        prompt = str(data.get("prompt", ""))
        answer = REPLIES.get(prompt, f"You said: {prompt}. Here is `code` and a [link](https://example.org/x).")
        slow = prompt.startswith("slow")

        def stream() -> None:
            words = answer.split(" ")
            reason = "stop"
            for i, w in enumerate(words):
                if mid in _state["cancelled"]:
                    reason = "cancelled"
                    break
                event("Token", {"message_id": mid, "index": i, "text": (" " if i else "") + w, "is_final": False})
                time.sleep(0.5 if slow else 0.02)
            event("Token", {"message_id": mid, "index": len(words), "text": "", "is_final": True,
                            "finish_reason": reason, "usage": {"prompt_tokens": 5, "completion_tokens": len(words)},
                            "timings": {"queue_ms": 3, "ttft_ms": 42, "tokens_per_second": 123.4}})

        threading.Thread(target=stream, daemon=True).start()
    elif kind == "Cancel":
        _state["cancelled"].add(data.get("message_id"))
    elif kind == "Stats":
        out({"type": "Stats", "id": rid, "data": {"model": {"name": "fake-model", "loaded": True, "queue_depth": 0,
                                                             "active_sequences": 0}}})
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
