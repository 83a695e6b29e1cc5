"""`ChatWidget`: a chat room of the llmchat server, as an anywidget.

The front end (``static/widget.js``, built from ``js/``) opens ONE WebSocket per widget model
to ``{base_url}llmchat/ws`` and keeps it alive; it mirrors its state into the read-only traits
below. Where the page has no llmchat server (VS Code, Colab, an extension-less server) it
relays frames through this kernel's comm instead (status ``"via_kernel"``).

    from jupyter_llmchat import ChatWidget
    chat = ChatWidget(room="general")
    chat                      # display it
    chat.ask("Summarise the last cell", max_tokens=128)
    chat.send("Results are in!")
"""

from __future__ import annotations

import pathlib
import re
import uuid
from typing import Any, Callable

import anywidget
import traitlets

__all__ = ["ChatWidget", "ROOM_RE", "GENERATE_CONFIG_KEYS"]

_STATIC = pathlib.Path(__file__).parent / "static"

ROOM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
GENERATE_CONFIG_KEYS = frozenset({"max_tokens", "temperature", "top_p", "top_k", "seed", "stop"})
STATUSES = ("connecting", "live", "reconnecting", "via_kernel", "failed")

# Shown instead of the chat when the package was installed without its front end
# (a source checkout where `npm run build` in js/ has not run yet).
_MISSING_ESM = """
export default {
  render({ el }) {
    el.textContent = "jupyter_llmchat: the widget front end is not built " +
      "(run `npm ci && npm run build` in js/, or reinstall the package).";
  },
};
"""


def _asset(name: str, fallback: str) -> pathlib.Path | str:
    # anywidget raises at class creation for a missing file path: degrade to a message instead.
    path = _STATIC / name
    return path if path.is_file() else fallback


RelayHandler = Callable[["ChatWidget", dict[str, Any]], None]


class ChatWidget(anywidget.AnyWidget):
    """A live view of one llmchat room, with a message box and an "Ask the model" mode.

    Parameters (all traits, settable later too): ``room``, ``ask_mode`` (the box asks the
    model by default; ``/say`` / ``/ask`` override per message), ``config`` (default
    generation settings for prompts typed in the widget, e.g. ``{"max_tokens": 256}``),
    ``height`` (CSS length), ``transport`` (``"auto"``, ``"websocket"`` or ``"kernel"``),
    ``base_url`` (override the Jupyter base URL found in the page; normally leave empty).
    """

    _esm = _asset("widget.js", _MISSING_ESM)
    _css = _asset("widget.css", "")

    # --- set from Python ----------------------------------------------------------------
    room = traitlets.Unicode("general").tag(sync=True)
    ask_mode = traitlets.Bool(True).tag(sync=True)
    config = traitlets.Dict().tag(sync=True)
    height = traitlets.Unicode("420px").tag(sync=True)
    transport = traitlets.Enum(["auto", "websocket", "kernel"], default_value="auto").tag(sync=True)
    base_url = traitlets.Unicode("").tag(sync=True)
    # Lets initialize() and render() of one model find each other in the page.
    _uid = traitlets.Unicode().tag(sync=True)

    # --- written by the front end (read them, don't set them) ---------------------------
    status = traitlets.Enum(STATUSES, default_value="connecting").tag(sync=True)
    status_reason = traitlets.Unicode("").tag(sync=True)
    last_seq = traitlets.Int(0).tag(sync=True)
    members = traitlets.List(traitlets.Dict()).tag(sync=True)
    error = traitlets.Unicode("").tag(sync=True)
    model_info = traitlets.Dict().tag(sync=True)
    user = traitlets.Dict().tag(sync=True)

    # The kernel-side relay used when the front end cannot reach the server itself.
    # Replaced by the kernel client once it exists; see `_relay_unavailable`.
    relay_handler: RelayHandler | None = None

    def __init__(self, room: str = "general", **kwargs: Any) -> None:
        kwargs.setdefault("_uid", uuid.uuid4().hex)
        super().__init__(room=room, **kwargs)
        self.on_msg(self._on_front_end_msg)

    # ---- validation ---------------------------------------------------------------------

    @traitlets.validate("room")
    def _check_room(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"]
        if not isinstance(value, str) or not ROOM_RE.match(value):
            raise traitlets.TraitError(
                f"invalid room name {value!r}: 1-128 chars of A-Z a-z 0-9 _ . : -, starting with a letter or digit"
            )
        return value

    @traitlets.validate("config")
    def _check_config(self, proposal: dict[str, Any]) -> dict[str, Any]:
        return _checked_config(proposal["value"])

    # ---- posting from the kernel ----------------------------------------------------------

    def send(self, text: str, buffers: Any = None) -> str | None:  # type: ignore[override]
        """Post ``text`` to the room as a chat message; returns the request id.

        The front end sends it over its socket (queued while reconnecting). Nothing is sent
        while no front end shows this widget's model. (A dict is passed on to ipywidgets'
        own ``Widget.send(content, buffers)``, which this name shadows.)
        """
        if isinstance(text, dict):
            super().send(text, buffers)
            return None
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty string")
        request_id = _request_id("t")
        self._send_to_front_end({"kind": "send", "id": request_id, "text": text})
        return request_id

    def ask(self, prompt: str, **config: Any) -> str:
        """Ask the shared model in the room; the answer streams into every member's view.

        ``config`` takes ``max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``seed``,
        ``stop`` (over the widget's ``config`` trait). Returns the request id; use
        :meth:`cancel` with it to stop the answer.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("prompt must be a non-empty string")
        request_id = _request_id("g")
        self._send_to_front_end({"kind": "ask", "id": request_id, "prompt": prompt, "config": _checked_config(config)})
        return request_id

    def cancel(self, request_id: str) -> None:
        """Stop an answer asked for with :meth:`ask` (sends ``Cancel`` once it is known)."""
        self._send_to_front_end({"kind": "cancel", "id": request_id})

    def reconnect(self) -> None:
        """Ask the front end to retry its connection now instead of waiting for the backoff."""
        self._send_to_front_end({"kind": "retry"})

    def _send_to_front_end(self, content: dict[str, Any]) -> None:
        # anywidget's custom message: arrives as `msg:custom` in the front end's initialize().
        super().send(content)

    # ---- kernel relay -----------------------------------------------------------------------

    def _on_front_end_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict) or content.get("kind") != "relay":
            return
        frame = content.get("frame")
        if not isinstance(frame, dict):
            return
        handler = type(self).relay_handler or _relay_unavailable
        handler(self, frame)

    def relay_to_front_end(self, frame: dict[str, Any]) -> None:
        """Deliver one server frame to the front end (used by the kernel relay)."""
        self._send_to_front_end({"kind": "relay", "frame": frame})


def _relay_unavailable(widget: ChatWidget, frame: dict[str, Any]) -> None:
    """Stub relay: answer every request with an Error until the kernel client exists."""
    if frame.get("type") == "Ping":
        widget.relay_to_front_end({"type": "Pong", "id": frame.get("id"), "data": {}})
        return
    reply: dict[str, Any] = {
        "type": "Error",
        "data": {"message": "kernel relay not available yet", "code": 501},
    }
    if isinstance(frame.get("id"), str):
        reply["id"] = frame["id"]
    widget.relay_to_front_end(reply)


def _checked_config(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise traitlets.TraitError("config must be a dict")
    unknown = set(config) - GENERATE_CONFIG_KEYS
    if unknown:
        raise TypeError(f"unknown generation setting(s) {sorted(unknown)}; allowed: {sorted(GENERATE_CONFIG_KEYS)}")
    return dict(config)


def _request_id(prefix: str) -> str:
    return f"py-{prefix}-{uuid.uuid4().hex[:16]}"
