"""`ChatWidget`: a chat room of the llmchat server, as an anywidget.

The front end (``static/widget.js``, built from ``js/``) opens ONE WebSocket per widget model
to ``{base_url}llmchat/ws`` and keeps it alive; it mirrors its state into the read-only traits
below. Where the page cannot reach the llmchat server (VS Code, Colab, an extension-less
server) it relays its frames through this kernel's comm instead (status ``"via_kernel"``):
the kernel opens its own socket to the server it finds (`discovery`) and passes frames both
ways (`KernelRelay`).

``send()`` / ``ask()`` / ``cancel()`` from Python go through the kernel-side client (REST and
a short socket), so they work with no view shown and are posted once however many views
there are. Design notes: docs/widget.md.

    from jupyter_llmchat import ChatWidget
    chat = ChatWidget(room="general")
    chat                      # display it
    chat.ask("Summarise the last cell", max_tokens=128)
    chat.send("Results are in!")
"""

from __future__ import annotations

import json
import pathlib
import re
import socket
import threading
import uuid
from collections import OrderedDict, deque
from typing import Any, Callable, TypeVar

import anywidget
import traitlets

from .errors import (
    AuthenticationFailed,
    ConnectionLost,
    ExtensionNotEnabled,
    LLMChatClientError,
    ServerNotFound,
    request_error,
)

__all__ = ["ChatWidget", "KernelRelay", "ROOM_RE", "GENERATE_CONFIG_KEYS", "NO_SERVER_FROM_KERNEL"]

_STATIC = pathlib.Path(__file__).parent / "static"

ROOM_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}$")
GENERATE_CONFIG_KEYS = frozenset(
    {"max_tokens", "temperature", "top_p", "top_k", "min_p", "repeat_penalty", "seed", "stop"}
)
STATUSES = ("connecting", "live", "reconnecting", "via_kernel", "failed")
NO_SERVER_FROM_KERNEL = "no llmchat server reachable from the kernel"

# The kernel cannot use its client here: fall back to the front end's socket.
_UNREACHABLE = (ServerNotFound, ExtensionNotEnabled, AuthenticationFailed)
T = TypeVar("T")

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
    generation settings for prompts typed in the widget and for :meth:`ask`, e.g.
    ``{"max_tokens": 256}``), ``height`` (CSS length), ``transport`` (``"auto"``,
    ``"websocket"`` or ``"kernel"``), ``base_url`` (override the Jupyter base URL found in
    the page; normally leave empty).
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
            raise traitlets.TraitError(
                f"invalid room name {value!r}: 1-128 chars of A-Z a-z 0-9 _ . : -, starting with a letter or digit"
            )
        return value

    @traitlets.validate("config")
    def _check_config(self, proposal: dict[str, Any]) -> dict[str, Any]:
        return _checked_config(proposal["value"])

    # ---- posting from the kernel ----------------------------------------------------------

    def send(self, text: str, buffers: Any = None, *, author_name: str | None = None) -> str | None:  # type: ignore[override]
        """Post ``text`` to the room as a chat message; returns its message id.

        Posted by the kernel itself (``jupyter_llmchat.client.broadcast``, REST), so it works
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
            posted = _kernel_call(lambda client: client.broadcast(room, text, author_name))
        except _UNREACHABLE as error:
            self.fallback_reason = str(error)
            request_id = _request_id("t")
            self._send_to_front_end({"kind": "send", "id": request_id, "text": text})
            return request_id
        self.fallback_reason = ""
        return str(posted["message_id"])

    def ask(self, prompt: str, **config: Any) -> str:
        """Ask the shared model in the room; the answer streams into every member's view.

        Returns at once (the server's ``Ack``) with the answer's message id; use
        :meth:`cancel` with it to stop the answer. ``config`` takes ``max_tokens``,
        ``temperature``, ``top_p``, ``top_k``, ``min_p``, ``repeat_penalty``, ``seed``,
        ``stop`` (over the widget's ``config`` trait). Posted by the kernel
        (``ChatClient.generate``, REST): the prompt appears as a ``"bot"`` message named
        "notebook", it works with no view shown, and refusals are raised here
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
        room = self.room
        try:
            ack = _kernel_call(lambda client: client.generate(room, prompt, **settings))
        except _UNREACHABLE as error:
            self.fallback_reason = str(error)
            request_id = _request_id("g")
            self._front_end_ids.add(request_id)
            # The front end lays the call's settings over the `config` trait itself.
            self._send_to_front_end({"kind": "ask", "id": request_id, "prompt": prompt, "config": extra})
            return request_id
        self.fallback_reason = ""
        return str(ack["message_id"])

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
            return _kernel_call(lambda client: _cancel_on_server(client, answer_id))
        except _UNREACHABLE as error:
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

    def _kernel_relay(self) -> KernelRelay:
        with self._relay_lock:
            if self._relay is None:
                self._relay = KernelRelay(self)
            return self._relay

    def relay_to_front_end(self, frame: dict[str, Any], cid: str | None = None) -> None:
        """Deliver one server frame to the front end (to the relay connection `cid`, if given)."""
        content: dict[str, Any] = {"kind": "relay", "frame": frame}
        if cid is not None:
            content["cid"] = cid
        self._send_to_front_end(content)


# ---- the kernel relay ---------------------------------------------------------------------

RELAY_QUEUE = 256  # frames from one front end waiting for the server socket
RELAY_CONNECTIONS = 8  # front-end connections one widget relays at once (tabs, reloads)
RELAY_CONNECT_TIMEOUT = 10.0


class _QueueFull(Exception):
    pass


class KernelRelay:
    """The kernel's own llmchat sockets for one widget whose front end cannot reach the server.

    Each front-end connection (a `KernelSocket` in js/src/kernel.ts, named by its `cid`) gets
    a `_RelayConnection`: one llmchat.v1 socket from the kernel to the server found by
    discovery, opened (`streaming.open_socket`) on its first frame. Frames from the front end
    wait in a bounded queue for a writer thread; a reader thread hands every server frame,
    the `Welcome` first, to `relay_to_front_end`. When the server closes the socket the front
    end is told (`relay_closed`) and comes back with `Join {since}` as after any drop; when
    no server can be reached every request is answered with `Error 503`. Everything is closed
    when the widget is.
    """

    def __init__(self, widget: ChatWidget, connect: Callable[[], Any] | None = None) -> None:
        self._widget = widget
        self._connect = connect or _open_kernel_socket
        self._lock = threading.Lock()
        self._connections: OrderedDict[str | None, _RelayConnection] = OrderedDict()
        self._ended: deque[str] = deque(maxlen=64)  # cids the front end no longer uses
        self._closed = False

    def handle(self, frame: dict[str, Any], cid: str | None = None) -> None:
        """One frame from the front end (kernel's shell thread; never blocks on the network)."""
        evicted: list[_RelayConnection] = []
        try:
            with self._lock:
                if self._closed or (cid is not None and cid in self._ended):
                    return  # a late frame of a connection that is gone: it will re-Join
                connection = self._connections.get(cid)
                if connection is None or not connection.put(frame):
                    connection = _RelayConnection(self, cid)
                    self._connections[cid] = connection
                    self._connections.move_to_end(cid)
                    while len(self._connections) > RELAY_CONNECTIONS:
                        evicted.append(self._connections.popitem(last=False)[1])
                    connection.put(frame)
                    connection.start()
        except _QueueFull:
            self._reply_error(frame, cid, 429, "kernel relay: too many frames waiting for the server")
        for old in evicted:
            old.stop(notify=True)

    def disconnect(self, cid: str | None) -> None:
        """The front end closed that connection: close its socket, say nothing back."""
        with self._lock:
            connection = self._connections.pop(cid, None)
            if cid is not None:
                self._ended.append(cid)
        if connection is not None:
            connection.stop(notify=False)

    def close(self) -> None:
        """Close every socket (the widget is closed)."""
        with self._lock:
            self._closed = True
            connections = list(self._connections.values())
            self._connections.clear()
        for connection in connections:
            connection.stop(notify=False)

    @property
    def connections(self) -> int:
        with self._lock:
            return sum(1 for c in self._connections.values() if not c.stopped)

    def drop_sockets(self) -> None:
        """Cut every server socket as a network failure would (for tests: the front end heals)."""
        with self._lock:
            connections = list(self._connections.values())
        for connection in connections:
            connection.cut()

    # -- called by connections (worker threads)

    def _deliver(self, frame: dict[str, Any], cid: str | None) -> None:
        self._widget.relay_to_front_end(frame, cid)

    def _ended_by_server(self, connection: _RelayConnection, code: int, reason: str) -> None:
        with self._lock:
            if self._connections.get(connection.cid) is connection:
                del self._connections[connection.cid]
            if connection.cid is not None:
                self._ended.append(connection.cid)
            if self._closed:
                return
        self._widget._send_to_front_end({"kind": "relay_closed", "cid": connection.cid, "code": code, "reason": reason})

    def _reply_error(self, frame: dict[str, Any], cid: str | None, code: int, message: str) -> None:
        reply: dict[str, Any] = {"type": "Error", "data": {"message": message, "code": code}}
        if isinstance(frame.get("id"), str):
            reply["id"] = frame["id"]
        self._deliver(reply, cid)


class _RelayConnection:
    """One front-end connection relayed over one kernel→server socket (see `KernelRelay`)."""

    def __init__(self, relay: KernelRelay, cid: str | None) -> None:
        self.relay = relay
        self.cid = cid
        self.stopped = False
        self._notify = True
        self._outbox: deque[dict[str, Any]] = deque()
        self._cond = threading.Condition()
        self._ws: Any = None

    def start(self) -> None:
        threading.Thread(target=self._write, name="llmchat-relay-writer", daemon=True).start()

    def put(self, frame: dict[str, Any]) -> bool:
        """Queue a frame for the server; False once this connection is over."""
        with self._cond:
            if self.stopped:
                return False
            if len(self._outbox) >= RELAY_QUEUE:
                raise _QueueFull
            self._outbox.append(frame)
            self._cond.notify()
            return True

    def stop(self, *, notify: bool) -> None:
        """End it; with `notify`, the front end is told the socket closed (it will re-Join)."""
        with self._cond:
            if self.stopped:
                return
            self.stopped = True
            self._notify = notify
            self._cond.notify_all()
            ws = self._ws
        if notify:
            self.relay._ended_by_server(self, 1001, "kernel relay closed")
        if ws is None:
            return  # still connecting: the writer sees `stopped` and closes what it opened
        try:
            ws.send_close(1000, b"relay closed")
        except Exception:
            pass
        _shutdown(ws)

    def cut(self) -> None:
        """Drop the socket without a close handshake, as a network failure does."""
        with self._cond:
            ws = self._ws
        if ws is not None:
            _shutdown(ws)

    def _write(self) -> None:
        try:
            ws = self.relay._connect()
        except LLMChatClientError as error:
            self._refuse(f"{NO_SERVER_FROM_KERNEL}: {error}")
            return
        except Exception as error:  # noqa: BLE001  anything else is still "not reachable"
            self._refuse(f"{NO_SERVER_FROM_KERNEL}: {type(error).__name__}: {error}")
            return
        with self._cond:
            if self.stopped:
                _shutdown(ws)
                return
            self._ws = ws
        ws.settimeout(None)  # an idle room is silent; the reader blocks until a frame or a close
        welcome = getattr(ws, "welcome", None)
        if isinstance(welcome, dict):
            self.relay._deliver(welcome, self.cid)
        threading.Thread(target=self._read, args=(ws,), name="llmchat-relay-reader", daemon=True).start()
        while True:
            with self._cond:
                while not self._outbox and not self.stopped:
                    self._cond.wait()
                if self.stopped:
                    return
                frame = self._outbox.popleft()
            try:
                ws.send(json.dumps(frame))
            except Exception:
                return  # the reader sees the socket die and reports it

    def _read(self, ws: Any) -> None:
        from .streaming import read_frame

        code, reason = 1006, "connection to the server lost"
        try:
            while True:
                self.relay._deliver(read_frame(ws), self.cid)
        except ConnectionLost as error:
            code = error.code or 1006
            reason = error.reason or reason
        except Exception as error:  # noqa: BLE001
            reason = f"{type(error).__name__}: {error}"
        with self._cond:
            notify = not self.stopped
            self.stopped = True
            self._cond.notify_all()
        _shutdown(ws)
        if notify:
            self.relay._ended_by_server(self, code, reason)

    def _refuse(self, message: str) -> None:
        """No socket could be opened: answer what waited with Error 503, and end."""
        with self._cond:
            self.stopped = True
            pending = list(self._outbox)
            self._outbox.clear()
        replied = False
        for frame in pending:
            if isinstance(frame.get("id"), str):
                self.relay._reply_error(frame, self.cid, 503, message)
                replied = True
        if not replied:
            self.relay._reply_error({}, self.cid, 503, message)


def _shutdown(ws: Any) -> None:
    """Close a websocket-client socket at once, waking a thread blocked reading it."""
    raw = getattr(ws, "sock", None)
    try:
        if raw is not None:
            raw.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    try:
        ws.shutdown()
    except Exception:
        pass


# ---- the kernel's client ------------------------------------------------------------------


def _kernel_call(call: Callable[[Any], T]) -> T:
    """`call(client)` on the kernel's default client (`jupyter_llmchat.client`).

    A cached client whose server went away or restarted (new secret, new pid) is dropped by
    the client module; then discovery runs once more before giving up.
    """
    from . import client as kernel_client

    cached = kernel_client._default is not None
    try:
        return kernel_client._with_default(call)
    except _UNREACHABLE:
        if not cached:
            raise
        return kernel_client._with_default(call)


def _open_kernel_socket() -> Any:
    from .streaming import open_socket

    return _kernel_call(lambda client: open_socket(client.server, min(client.timeout, RELAY_CONNECT_TIMEOUT)))


def _cancel_on_server(client: Any, message_id: str) -> bool:
    """Send `Cancel` over a short socket; True if accepted, False if the answer had finished."""
    from .streaming import open_socket, read_frame

    ws = open_socket(client.server, min(client.timeout, 30.0))
    try:
        cancel_id, ping_id = _request_id("c"), _request_id("p")
        ws.send(json.dumps({"type": "Cancel", "id": cancel_id, "data": {"message_id": message_id}}))
        # An accepted Cancel has no reply of its own: the Pong that follows it says "done".
        ws.send(json.dumps({"type": "Ping", "id": ping_id, "data": {}}))
        while True:
            frame = read_frame(ws)
            if frame.get("type") == "Error" and frame.get("id") == cancel_id:
                data = frame.get("data") or {}
                code = int(data.get("code", 500))
                if code == 409:
                    return False
                raise request_error(code, str(data.get("message", "error")))
            if frame.get("type") == "Pong" and frame.get("id") == ping_id:
                return True
    finally:
        _shutdown(ws)


def _checked_config(config: Any) -> dict[str, Any]:
    if not isinstance(config, dict):
        raise traitlets.TraitError("config must be a dict")
    unknown = set(config) - GENERATE_CONFIG_KEYS
    if unknown:
        raise TypeError(f"unknown generation setting(s) {sorted(unknown)}; allowed: {sorted(GENERATE_CONFIG_KEYS)}")
    return dict(config)


def _request_id(prefix: str) -> str:
    return f"py-{prefix}-{uuid.uuid4().hex[:16]}"
