"""`ChatWidget`: a chat room of the llmchat server, as an anywidget.

The front end (``static/widget.js``, built from ``js/``) opens ONE WebSocket per widget model
to ``{base_url}llmchat/ws`` and keeps it alive; it mirrors its state into the read-only traits
below. Where the page cannot reach the llmchat server (VS Code, Colab, an extension-less
server) it relays its frames through this kernel's comm instead (status ``"via_kernel"``):
the kernel opens its own socket to the server it finds (`locate`: a Jupyter server with
llmchat, else the user's `jupyter llmchat serve`, started if none runs) and passes frames
both ways (`KernelRelay`). The same works in marimo (``mo.ui.anywidget(ChatWidget())``).

``send()`` / ``ask()`` / ``cancel()`` from Python go through the kernel-side client (REST and
a short socket), so they work with no view shown and are posted once however many views
there are. `@name` typed in the box lists this kernel's variables and attaches the ones
mentioned to the question (custom messages answered by `namespace`). Design notes:
docs/widget.md.

    from jupyter_llmchat import ChatWidget
    chat = ChatWidget(room="general")
    chat                      # display it
    chat.ask("Summarise the last cell", max_tokens=128)
    chat.send("Results are in!")
"""

from __future__ import annotations

import pathlib
import threading
import uuid
from typing import Any, Callable

import anywidget
import traitlets

from . import context as kernel_context
from . import namespace
from .api import UNREACHABLE, with_default_client
from .client import ROOM_RE, generation_config
from .errors import LLMChatClientError
from ..protocol import ROOM_RULE
from .relay import KernelRelay
from .streaming import new_id

__all__ = ["ChatWidget"]

_STATIC = pathlib.Path(__file__).parent.parent / "static"  # built from js/ into the package

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


def _text_asset(name: str) -> str:
    """A bundle's source text ("" when not built): shipped to the front end as a trait."""
    path = _STATIC / name
    return path.read_text(encoding="utf-8") if path.is_file() else ""


#: The question posted with "Ask about the last error"; the error itself is the attachment.
ERROR_QUESTION = "What does this error mean, and how do I fix it?"
NO_ERROR_NOTICE = "No error to ask about: nothing has failed in this kernel yet (run the failing cell first)."
_ERROR_SUMMARY_CHARS = 200


RelayHandler = Callable[["ChatWidget", dict[str, Any]], None]


class ChatWidget(anywidget.AnyWidget):
    """A live view of one llmchat room, with a message box and an "Ask the model" mode.

    Parameters (all traits, settable later too): ``room``, ``ask_mode`` (the box asks the
    model by default; ``/say`` / ``/ask`` override per message), ``config`` (default
    generation settings for prompts typed in the widget and for :meth:`ask`, e.g.
    ``{"max_tokens": 256}``), ``height`` (CSS length), ``transport`` (``"auto"``,
    ``"websocket"`` or ``"kernel"``), ``base_url`` (override the Jupyter base URL found in
    the page; normally leave empty).
    """

    _esm = _asset("widget.js", _MISSING_ESM)
    _css = _asset("widget.css", "")
    # The syntax highlighter, a second bundle: the front end imports it (through a Blob URL)
    # only when the first code block appears, so it costs nothing on the first paint.
    _highlighter_esm = traitlets.Unicode(_text_asset("highlight.js")).tag(sync=True)

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

    # Replaces the kernel relay when set (a class attribute: `handler(widget, frame)`, which
    # answers with `widget.relay_to_front_end(frame)`); the e2e tests plug a fake server in.
    relay_handler: RelayHandler | None = None

    def __init__(self, room: str = "general", **kwargs: Any) -> None:
        kwargs.setdefault("_uid", uuid.uuid4().hex)
        super().__init__(room=room, **kwargs)
        self._relay: KernelRelay | None = None
        self._relay_lock = threading.Lock()
        self._front_end_ids: set[str] = set()  # asks that went through the front end (fallback)
        #: Why the last send/ask/cancel could not use the kernel's client ("" when it could).
        self.fallback_reason = ""
        self.on_msg(self._on_front_end_msg)

    # ---- validation ---------------------------------------------------------------------

    @traitlets.validate("room")
    def _check_room(self, proposal: dict[str, Any]) -> str:
        value = proposal["value"]
        if not isinstance(value, str) or not ROOM_RE.match(value):
            raise traitlets.TraitError(f"invalid room name {value!r}: {ROOM_RULE}")
        return value

    @traitlets.validate("config")
    def _check_config(self, proposal: dict[str, Any]) -> dict[str, Any]:
        return _checked_config(proposal["value"])

    # ---- posting from the kernel ----------------------------------------------------------

    def send(self, text: str, buffers: Any = None, *, author_name: str | None = None) -> str | None:  # type: ignore[override]
        """Post ``text`` to the room as a chat message; returns its message id.

        Posted by the kernel itself (``jupyter_llmchat.kernel.api.broadcast``, REST), so it works
        with no view of the widget on screen and is posted once however many views there
        are. Members see it with author kind ``"bot"``, the user the kernel authenticates
        as (the server's owner, through the runtime secret) and the name ``author_name``
        (default ``"notebook"``).

        Fallback: where the kernel cannot find or reach the llmchat server (VS Code, Colab,
        several servers and none started this kernel, see ``fallback_reason``), the message
        goes through the front end's socket as before: it is then posted by the browser user
        (author kind ``"user"``), only while a view of this widget is shown (queued while it
        reconnects), once per browser tab showing it; the return value is then a request id.

        (A dict is passed on to ipywidgets' own ``Widget.send(content, buffers)``, which this
        name shadows.)
        """
        if isinstance(text, dict):
            super().send(text, buffers)
            return None
        if not isinstance(text, str) or not text.strip():
            raise ValueError("text must be a non-empty string")
        room = self.room
        try:
            posted = with_default_client(lambda client: client.broadcast(room, text, author_name))
        except UNREACHABLE as error:
            self.fallback_reason = str(error)
            request_id = new_id("t")
            self._send_to_front_end({"kind": "send", "id": request_id, "text": text})
            return request_id
        self.fallback_reason = ""
        return str(posted["message_id"])

    def ask(self, prompt: str, *, context: Any = None, new_thread: bool = False, **config: Any) -> str:
        """Ask the shared model in the room; the answer streams into every member's view.

        Returns at once (the server's ``Ack``) with the answer's message id; use
        :meth:`cancel` with it to stop the answer. ``context``: live objects (a DataFrame,
        an array, an exception…, one or a list) whose compact descriptions
        (``kernel_context``) the model gets with the question; the room shows only what was
        attached. ``new_thread``: the model forgets your earlier exchanges in the room.
        ``config`` takes ``max_tokens``, ``temperature``, ``top_p``, ``top_k``, ``min_p``,
        ``repeat_penalty``, ``seed``, ``stop`` (over the widget's ``config`` trait). Posted
        by the kernel (``ChatClient.generate``, REST): the prompt appears as a ``"bot"``
        message named "notebook", it works with no view shown, and refusals are raised here
        (``ModelUnavailable`` while the model loads, ``RateLimited`` when the queue is full).
        To read the answer in Python, use ``jupyter_llmchat.ask`` instead.

        Fallback: where the kernel cannot reach the server (see :meth:`send`), the prompt goes
        through the front end as before (only while a view is shown; two tabs send it twice
        but the server dedupes its id) and the return value is a request id, which
        :meth:`cancel` also accepts.
        """
        if not isinstance(prompt, str) or not prompt.strip():
            raise ValueError("prompt must be a non-empty string")
        extra = _checked_config(config)
        settings = {**self.config, **extra}
        objects = None if context is None else list(context) if isinstance(context, (list, tuple)) else [context]
        fields: dict[str, Any] = {}
        if objects:
            fields["context"] = objects
        if new_thread:
            fields["new_thread"] = True
        room = self.room
        try:
            ack = with_default_client(lambda client: client.generate(room, prompt, **fields, **settings))
        except UNREACHABLE as error:
            self.fallback_reason = str(error)
            request_id = new_id("g")
            self._front_end_ids.add(request_id)
            # The front end lays the call's settings over the `config` trait itself.
            message: dict[str, Any] = {"kind": "ask", "id": request_id, "prompt": prompt, "config": extra}
            if objects:
                message["attachments"] = kernel_context.describe_all(objects)
            if new_thread:
                message["new_thread"] = True
            self._send_to_front_end(message)
            return request_id
        self.fallback_reason = ""
        return str(ack["message_id"])

    def ask_about_last_error(self, question: str = ERROR_QUESTION, **config: Any) -> str | None:
        """Ask the model in the room about the last exception of this kernel.

        The exception of the last failed cell (IPython's ``sys.last_exc`` /
        ``sys.last_value``; in marimo, the error of a cell in error) goes with the question as an attachment of kind ``"error"``:
        its type, message and the innermost frames of its traceback, trimmed to a budget
        (``kernel_context``); the question as posted names the error in one line. Returns
        the answer's message id (or the fallback's request id, as :meth:`ask`), or None
        when nothing has failed yet. The widget's "Ask about the last error" button calls
        this in the kernel.
        """
        exc = namespace.last_error()
        if exc is None:
            return None
        summary = " ".join(f"{type(exc).__name__}: {exc}".split())
        if len(summary) > _ERROR_SUMMARY_CHARS:
            summary = summary[: _ERROR_SUMMARY_CHARS - 1] + "…"
        return self.ask(f"{question}\n\n`{summary}`", context=[exc], **config)

    def cancel(self, answer_id: str) -> bool | None:
        """Stop an answer: ``answer_id`` is what :meth:`ask` returned (or any message id).

        The kernel sends ``Cancel`` over a short socket of its own. Returns True when the
        server accepted it (the answer's last token then says ``finish_reason:
        "cancelled"``), False when the answer had already finished. Only the user who asked
        may cancel: the kernel authenticates as the server's owner, so it can stop the
        answers it asked for, but not those a browser user asked for under another identity
        (a token login's anonymous user; on JupyterHub both are the same user):
        ``ChatRequestError`` 403. An unknown id raises ``ChatRequestError`` 404.

        An id from the front-end fallback (or any id when the kernel cannot reach the server)
        is handed to the front end, which cancels it if it sent it; returns None then.
        """
        if not isinstance(answer_id, str) or not answer_id:
            raise ValueError("answer_id must be a non-empty string")
        if answer_id in self._front_end_ids:
            self._send_to_front_end({"kind": "cancel", "id": answer_id})
            return None
        try:
            return with_default_client(lambda client: client.cancel(answer_id))
        except UNREACHABLE as error:
            self.fallback_reason = str(error)
            self._send_to_front_end({"kind": "cancel", "id": answer_id})
            return None

    def reconnect(self) -> None:
        """Ask the front end to retry its connection now instead of waiting for the backoff."""
        self._send_to_front_end({"kind": "retry"})

    def close(self) -> None:
        """Close the widget: its views go away, and so does the kernel relay's socket."""
        with self._relay_lock:
            relay, self._relay = self._relay, None
        if relay is not None:
            relay.close()
        super().close()

    def _send_to_front_end(self, content: dict[str, Any]) -> None:
        # anywidget's custom message: arrives as `msg:custom` in the front end's initialize().
        super().send(content)

    # ---- kernel relay -----------------------------------------------------------------------

    def _on_front_end_msg(self, _widget: Any, content: Any, _buffers: Any) -> None:
        if not isinstance(content, dict):
            return
        kind = content.get("kind")
        if kind == "ask_error":
            self._ask_error_from_front_end()
            return
        if kind in ("variables", "describe"):  # `@name` in the box (namespace.py)
            reply = namespace.variables_reply if kind == "variables" else namespace.describe_reply
            self._send_to_front_end(reply(content))
            return
        cid = content.get("cid") if isinstance(content.get("cid"), str) else None
        if kind == "relay":
            frame = content.get("frame")
            if not isinstance(frame, dict):
                return
            handler = type(self).relay_handler
            if handler is not None:
                handler(self, frame)
            else:
                self._kernel_relay().handle(frame, cid)
        elif kind == "relay_close":
            relay = self._relay
            if relay is not None:
                relay.disconnect(cid)

    def _ask_error_from_front_end(self) -> None:
        """The "Ask about the last error" button: ask, or say why not; never raise into the comm."""
        try:
            if self.ask_about_last_error() is None:
                self._notice(NO_ERROR_NOTICE)
        except (LLMChatClientError, ValueError, TypeError) as error:
            self._notice(f"Could not ask about the last error: {error}", level="error")
        finally:
            self._send_to_front_end({"kind": "ask_error_done"})

    def _notice(self, text: str, level: str = "info") -> None:
        """A line for the front end's notice area (shown in every view of this widget)."""
        self._send_to_front_end({"kind": "notice", "text": text, "level": level})

    def _kernel_relay(self) -> KernelRelay:
        with self._relay_lock:
            if self._relay is None:
                self._relay = KernelRelay(self._send_to_front_end, self.relay_to_front_end)
            return self._relay

    def relay_to_front_end(self, frame: dict[str, Any], cid: str | None = None) -> None:
        """Deliver one server frame to the front end (to the relay connection `cid`, if given)."""
        content: dict[str, Any] = {"kind": "relay", "frame": frame}
        if cid is not None:
            content["cid"] = cid
        self._send_to_front_end(content)


def _checked_config(config: Any) -> dict[str, Any]:
    """Generation settings for the `config` trait and `ask`: the client's own checks."""
    if not isinstance(config, dict):
        raise traitlets.TraitError("config must be a dict")
    return generation_config(config)
