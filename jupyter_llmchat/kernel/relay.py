"""`KernelRelay`: the kernel's own llmchat sockets for a widget whose page cannot reach the server.

Where the browser cannot open `{base_url}llmchat/ws` (VS Code, Colab, a server without the
extension), the widget's front end sends its frames over the kernel comm instead
(`js/src/kernel.ts`); `ChatWidget` hands them here, and they go on to the server over a
socket the kernel opens itself (discovery finds the server; see docs/widget.md).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict, deque
from typing import Any, Callable

from .. import protocol
from .api import with_default_client
from .errors import ChatRequestError, ConnectionLost, LLMChatClientError
from .streaming import open_socket, read_frame, shutdown_socket

__all__ = ["KernelRelay", "NO_SERVER_FROM_KERNEL", "STARTING_SERVICE", "RELAY_QUEUE", "RELAY_CONNECTIONS"]

NO_SERVER_FROM_KERNEL = "no llmchat server reachable from the kernel"
STARTING_SERVICE = "starting the model service…"


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
    the `Welcome` first, to `deliver`. When the server closes the socket the front
    end is told (`relay_closed`) and comes back with `Join {since}` as after any drop; when
    no server can be reached every request is answered with `Error 503`. Where there is no
    server at all, discovery starts the user's llmchat service (`locate`); meanwhile the front
    end is told `{kind: "relay_status", text: "starting the model service…"}`. Everything is
    closed when the widget is.

    The widget gives two callables: `notify(content)` sends a relay message of its own to the
    front end (`relay_status`, `relay_closed`), `deliver(frame, cid)` hands it a server frame.
    """

    def __init__(
        self,
        notify: Callable[[dict[str, Any]], None],
        deliver: Callable[[dict[str, Any], str | None], None],
        connect: Callable[[], Any] | None = None,
    ) -> None:
        self._notify = notify
        self._deliver_to_front_end = deliver
        self._connect = connect or (lambda: open_kernel_socket(on_start=self._starting))
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

    def _starting(self) -> None:
        """The service is being started for us (a connect waits for it): say so, not an error."""
        self._notify({"kind": "relay_status", "text": STARTING_SERVICE})

    def _deliver(self, frame: dict[str, Any], cid: str | None) -> None:
        self._deliver_to_front_end(frame, cid)

    def _ended_by_server(self, connection: _RelayConnection, code: int, reason: str) -> None:
        with self._lock:
            if self._connections.get(connection.cid) is connection:
                del self._connections[connection.cid]
            if connection.cid is not None:
                self._ended.append(connection.cid)
            if self._closed:
                return
        self._notify({"kind": "relay_closed", "cid": connection.cid, "code": code, "reason": reason})

    def _reply_error(self, frame: dict[str, Any], cid: str | None, code: int, message: str) -> None:
        """Answer a frame as the server would have: its `Error`, read back like any server frame."""
        request_id = frame.get("id") if isinstance(frame.get("id"), str) else None
        self._deliver(json.loads(protocol.error_frame(code, message, id=request_id)), cid)


class _RelayConnection:
    """One front-end connection relayed over one kernel→server socket (see `KernelRelay`)."""

    def __init__(self, relay: KernelRelay, cid: str | None) -> None:
        self.relay = relay
        self.cid = cid
        self.stopped = False
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
        shutdown_socket(ws)

    def cut(self) -> None:
        """Drop the socket without a close handshake, as a network failure does."""
        with self._cond:
            ws = self._ws
        if ws is not None:
            shutdown_socket(ws)

    def _write(self) -> None:
        try:
            ws = self.relay._connect()
        except ChatRequestError as error:  # the server answered (e.g. 503: a setting stopped llmchat): its words
            self._refuse(error.message, error.code)
            return
        except LLMChatClientError as error:
            self._refuse(f"{NO_SERVER_FROM_KERNEL}: {error}")
            return
        except Exception as error:  # noqa: BLE001  anything else is still "not reachable"
            self._refuse(f"{NO_SERVER_FROM_KERNEL}: {type(error).__name__}: {error}")
            return
        with self._cond:
            if self.stopped:
                shutdown_socket(ws)
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
                ws.send(protocol.encode_json(frame))  # as the front end built it: the server validates it
            except Exception:
                return  # the reader sees the socket die and reports it

    def _read(self, ws: Any) -> None:
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
        shutdown_socket(ws)
        if notify:
            self.relay._ended_by_server(self, code, reason)

    def _refuse(self, message: str, code: int = 503) -> None:
        """No socket could be opened: answer what waited with the Error (503: unreachable), and end."""
        with self._cond:
            self.stopped = True
            pending = list(self._outbox)
            self._outbox.clear()
        replied = False
        for frame in pending:
            if isinstance(frame.get("id"), str):
                self.relay._reply_error(frame, self.cid, code, message)
                replied = True
        if not replied:
            self.relay._reply_error({}, self.cid, code, message)


def open_kernel_socket(on_start: Callable[[], None] | None = None) -> Any:
    """A socket from this kernel to the llmchat it finds (the relay's default), marked as a
    widget's relay: what the widget posts through it is the user's own."""
    return with_default_client(
        lambda client: open_socket(client.server, min(client.timeout, RELAY_CONNECT_TIMEOUT), relay=True), on_start
    )
