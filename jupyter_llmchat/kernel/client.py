"""`ChatClient`: one server's llmchat API from notebook code, without any widget on screen.

    client = connect()                      # or connect(url=..., token=...)
    client.broadcast("general", "Hint: look at exercise 3 again", author_name="Teacher")

The server is found by `locate` (the server that started this kernel, normally; where none
has llmchat, the user's llmchat service, started on first use). REST calls go through
`rest.py`, answers stream over `streaming.py`; the module-level `jupyter_llmchat.ask`,
`broadcast`, … use one cached client (`api.py`). Everything here is blocking and
thread-free except `aask`, so it works inside a kernel whose event loop is already running.
"""

from __future__ import annotations

import re
import sys
from typing import Any, Callable, get_args

from .discovery import ServerInfo
from .locate import locate
from . import rest
from .context import describe_all
from .. import protocol
from ..protocol import ROOM_PATTERN, ROOM_RULE, ContextMode
from .streaming import Answer, AsyncAnswer, new_id, open_socket, raise_for_error, read_frame, shutdown_socket

__all__ = ["ChatClient", "connect", "generation_config"]

ROOM_RE = re.compile(ROOM_PATTERN)
CONFIG_KEYS = frozenset(protocol.GenerateConfig.__struct_fields__)  # declared once, in the protocol
CONTEXT_MODES = get_args(ContextMode)  # declared once, in the protocol
DEFAULT_TIMEOUT = 120.0  # generous: an answer may wait in the queue before its first token
PROBE_TIMEOUT = 10.0  # a local server's stats, asked while choosing one


class ChatClient:
    """One server's llmchat API: REST for posts and figures, a WebSocket per `ask`."""

    def __init__(self, server: ServerInfo, *, timeout: float = DEFAULT_TIMEOUT) -> None:
        self.server = server
        self.timeout = timeout  # seconds to connect, and at most between two frames of an answer
        self._new_threads: set[str] = set()  # rooms whose next question starts a new thread (`new_thread`)

    def __repr__(self) -> str:
        return f"<ChatClient {self.server.describe()}>"

    # -- rooms

    def broadcast(self, room: str, content: str, author_name: str | None = None) -> dict[str, Any]:
        """Post `content` into `room` as a bot; returns {message_id, seq}.

        Every member sees it with author kind "bot", username = the user this client is
        authenticated as, and name = `author_name` (default "notebook").
        """
        if not isinstance(content, str) or not content:
            raise ValueError("content must be a non-empty string")
        body: dict[str, Any] = {"content": content}
        if author_name is not None:
            body["author_name"] = author_name
        return self._request("POST", f"rooms/{_room(room)}/messages", body=body)

    def ask(
        self,
        room: str | None,
        prompt: str,
        *,
        context: Any = None,
        new_thread: bool = False,
        reply_to: str | None = None,
        **config: Any,
    ) -> Answer:
        """Ask the shared model; returns an `Answer`, an iterator of the streamed text pieces.

        With a room, the prompt and the answer appear in that room for every member; with
        `room=None`, it is a private completion. `context`: live objects (a DataFrame, an
        array, an exception...; one, or a list of them) whose compact descriptions the model
        gets with the question (`kernel_context`). `new_thread`: the model forgets your
        earlier exchanges in this room. `reply_to`: the message_id of a room message the
        question is about. `config`: max_tokens, temperature, top_p, top_k, min_p,
        repeat_penalty, seed, stop.
        """
        room = _room(room) if room is not None else None
        prompt, config = _prompt(prompt), generation_config(config)
        fields = self._question_fields(room, context, new_thread, reply_to)
        answer = Answer(self.server, room, prompt, config, self.timeout, fields)
        self._asked(room, fields)
        return answer

    def generate(
        self,
        room: str,
        prompt: str,
        *,
        author_name: str | None = None,
        context: Any = None,
        new_thread: bool = False,
        reply_to: str | None = None,
        **config: Any,
    ) -> dict[str, Any]:
        """Ask the model into `room` without waiting for the answer; returns {message_id, queue_position}.

        REST `POST llmchat/api/rooms/{room}/generate`, with a fresh `Idempotency-Key`. The
        prompt is posted as a bot message (name `author_name`, default "notebook") and the
        answer streams to every member of the room; nothing streams back here (use `ask`
        for that). Refusals (503 model loading, 429 queue full) are raised at once.
        `context`, `new_thread` and `reply_to` as for `ask`.
        """
        room = _room(room)
        body: dict[str, Any] = {"prompt": _prompt(prompt)}
        settings = generation_config(config)
        if settings:
            body["config"] = settings
        if author_name is not None:
            body["author_name"] = author_name
        fields = self._question_fields(room, context, new_thread, reply_to)
        key = new_id("g")
        accepted = self._request("POST", f"rooms/{room}/generate", body={**body, **fields}, headers={"Idempotency-Key": key})
        self._asked(room, fields)
        return accepted

    def new_thread(self, room: str) -> None:
        """Make the next question of this client into `room` start a new thread.

        The model then sees none of your earlier exchanges in that room: for a fresh start
        after an unrelated topic, or at the top of a notebook that is run again and again.
        """
        self._new_threads.add(_room(room))

    def set_room_prompt(self, room: str, prompt: str | None, context: str | None = None) -> dict[str, Any]:
        """Give `room` its own system prompt (None or "" = the server's default), and, if given,
        its context mode: "own" (each asker's own exchanges) or "shared" (the whole room).

        REST `PUT llmchat/api/rooms/{room}`; every member sees a system message saying so.
        Needs write permission on the server.
        """
        if prompt is not None and not isinstance(prompt, str):
            raise TypeError("prompt must be a string or None")
        body: dict[str, Any] = {"system_prompt": prompt}
        if context is not None:
            if context not in CONTEXT_MODES:
                raise ValueError(f"context must be one of {CONTEXT_MODES}, not {context!r}")
            body["context"] = context
        return self._request("PUT", f"rooms/{_room(room)}", body=body)

    def clear(self, room: str) -> dict[str, Any]:
        """Delete `room`'s stored messages, for every member (they get a `Reset`).

        REST `DELETE llmchat/api/rooms/{room}/messages`; needs write permission. Sequence
        numbers go on from where they were, so nobody mistakes new messages for old ones.
        """
        return self._request("DELETE", f"rooms/{_room(room)}/messages")

    def cancel(self, message_id: str) -> bool:
        """Stop an answer (the `message_id` of `generate`'s result or of an `Answer`).

        True when the server accepted it (the answer's last token then says
        `finish_reason: "cancelled"`), False when the answer had already finished. Only the
        user who asked may cancel (`ChatRequestError` 403); an unknown id gives 404.
        """
        if not isinstance(message_id, str) or not message_id:
            raise ValueError("message_id must be a non-empty string")
        ws = open_socket(self.server, min(self.timeout, 30.0))
        try:
            cancel_id, ping_id = new_id("c"), new_id("p")
            ws.send(protocol.client_frame("Cancel", protocol.CancelData(message_id), id=cancel_id))
            # An accepted Cancel has no reply of its own: the Pong that follows it says "done".
            ws.send(protocol.client_frame("Ping", protocol.EmptyData(), id=ping_id))
            while True:
                frame = read_frame(ws)
                if frame.get("type") == "Error" and frame.get("id") == cancel_id:
                    if (frame.get("data") or {}).get("code") == 409:
                        return False  # already finished
                    raise_for_error(frame)
                if frame.get("type") == "Pong" and frame.get("id") == ping_id:
                    return True
        finally:
            shutdown_socket(ws)

    def aask(
        self,
        room: str | None,
        prompt: str,
        *,
        context: Any = None,
        new_thread: bool = False,
        reply_to: str | None = None,
        **config: Any,
    ) -> AsyncAnswer:
        """`ask` for async code: `async for piece in client.aask(...)` or `await client.aask(...)`.

        The context objects are described now, as they are when `aask` is called.
        """
        room = _room(room) if room is not None else None
        prompt, config = _prompt(prompt), generation_config(config)
        fields = self._question_fields(room, context, new_thread, reply_to)

        def start() -> Answer:
            answer = Answer(self.server, room, prompt, config, self.timeout, fields)
            self._asked(room, fields)
            return answer

        return AsyncAnswer(start)

    def rooms(self) -> list[dict[str, Any]]:
        """Every room with its member count and head seq: [{room, members, head_seq}]."""
        return self._request("GET", "rooms")["rooms"]

    def history(self, room: str, since: int | None = None, limit: int = 50) -> list[dict[str, Any]]:
        """The room's stored messages (Text events, oldest first), after `since` if given."""
        params: dict[str, Any] = {"limit": limit}
        if since is not None:
            params["since"] = since
        return self._request("GET", f"rooms/{_room(room)}/messages", params=params)["messages"]

    def stats(self) -> dict[str, Any]:
        """The server's live figures (docs/protocol.md, "Stats")."""
        return self._request("GET", "stats")

    def use_model(self, reference: str) -> dict[str, Any]:
        """Switch the server's model (moderators only); `Stats.model` as the switch begins."""
        return self._request("PUT", "model", body={"model": reference})

    # -- questions

    def _question_fields(self, room: str | None, context: Any, new_thread: bool, reply_to: str | None) -> dict[str, Any]:
        """The Generate fields beyond prompt and config; argument errors before anything is sent."""
        fields: dict[str, Any] = {}
        if context is not None:
            objects = list(context) if isinstance(context, (list, tuple)) else [context]
            attachments = describe_all(objects)
            if attachments:
                fields["attachments"] = attachments
        if new_thread and room is None:
            raise ValueError("new_thread needs a room: a private question has no thread")
        if room is not None and (new_thread or room in self._new_threads):
            fields["new_thread"] = True
        if reply_to is not None:
            if room is None:
                raise ValueError("reply_to needs a room: it names a message of that room")
            if not isinstance(reply_to, str) or not 0 < len(reply_to) <= 128:
                raise ValueError("reply_to must be a message_id (a string of 1-128 characters)")
            fields["reply_to"] = reply_to
        return fields

    def _asked(self, room: str | None, fields: dict[str, Any]) -> None:
        """The server accepted a question: a pending `new_thread` for its room is used up."""
        if room is not None and fields.get("new_thread"):
            self._new_threads.discard(room)

    # -- transport

    def _request(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None, headers: dict[str, str] | None = None
    ) -> Any:
        return rest.request(self.server, self.timeout, method, path, body=body, params=params, headers=headers)


def connect(
    url: str | None = None, token: str | None = None, *, timeout: float = DEFAULT_TIMEOUT, on_start: Callable[[], None] | None = None
) -> ChatClient:
    """A client for the server `locate.locate` finds (or the one given): a Jupyter server with
    llmchat, else the user's llmchat service, started if none runs (`LLMCHAT_AUTOSTART=0`: not).
    `on_start()` is called when a service is being started and waited for (by default a line
    on stderr: the first call then takes a few seconds)."""
    return ChatClient(locate(url, token, _stats, on_start=on_start or _say_starting), timeout=timeout)


def _say_starting() -> None:
    print("llmchat: starting the model service… (jupyter llmchat serve, shared by this user's kernels)", file=sys.stderr, flush=True)


def _stats(server: ServerInfo) -> dict[str, Any]:
    return ChatClient(server, timeout=PROBE_TIMEOUT).stats()


# -- argument checks (clear errors before any network)


def _room(room: str) -> str:
    if not isinstance(room, str) or not ROOM_RE.match(room):
        raise ValueError(f"invalid room name {room!r}: {ROOM_RULE}")
    return room  # the pattern leaves nothing to escape in a URL path


def _prompt(prompt: str) -> str:
    if not isinstance(prompt, str) or not prompt:
        raise ValueError("prompt must be a non-empty string")
    return prompt


def generation_config(config: dict[str, Any]) -> dict[str, Any]:
    """Generation settings as sent: unknown keys refused (TypeError), unset (None) ones dropped."""
    unknown = set(config) - CONFIG_KEYS
    if unknown:
        raise TypeError(f"unknown generation setting(s) {sorted(unknown)}; allowed: {sorted(CONFIG_KEYS)}")
    return {key: value for key, value in config.items() if value is not None}

