"""The chat service without Tornado and without a model, for the fast tier.

`make_chat()` (tests/server/conftest.py) builds what the extension builds, a `ChatService`
over a `MemoryRoomBus` and a SQLite `HistoryStore`, with the stand-in backend
(tests/support/standin.py) in place of the engine.
`chat.client(user)` connects through a fake transport (`server.connection.Transport`): it
sends frames as JSON text, as a socket would, and keeps every frame it was sent, decoded.
Tests are `async`: connections write through the running event loop. A frame is handled at
once (`run_now`): the memory bus never suspends, and `run_now` fails if it ever did.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any, Callable, Coroutine, TypeVar

from .standin import StandIn

from jupyter_llmchat import protocol
from jupyter_llmchat.engine.types import EngineSettings
from jupyter_llmchat.server.connection import Identity
from jupyter_llmchat.room_bus.memory_bus import MemoryRoomBus
from jupyter_llmchat.room_bus.bus import RoomBus
from jupyter_llmchat.server.service import ChatService
from jupyter_llmchat.server.settings import ServiceLimits
from jupyter_llmchat.server.token_steps import TokenSteps
from jupyter_llmchat.room_bus.store import HistoryStore

T = TypeVar("T")


def run_now(coroutine: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine of the service over the memory bus to its end in this step; it must
    not suspend (the memory bus's async methods complete without waiting)."""
    try:
        coroutine.send(None)
    except StopIteration as done:
        return done.value
    coroutine.close()
    raise AssertionError("the coroutine suspended: the memory bus must complete without waiting")


ADA = Identity("ada", "Ada Lovelace")
BOB = Identity("bob", "Bob")
EVE = Identity("eve", "Eve")


class FakeClient:
    """One connection to the service; `inbox` holds the frames sent to it, oldest first."""

    def __init__(self, chat: Chat, user: Identity) -> None:
        self.chat = chat
        self.inbox: list[dict[str, Any]] = []
        self.closed_with: tuple[int, str] | None = None
        self.paused = False  # True: writes never complete (a client that stopped reading)
        self._ids = 0
        self.connection = chat.service.connect(user, self)

    # -- the Transport a Connection writes to
    async def write_frames(self, frames: list[bytes]) -> None:
        if self.paused:  # never returns: the fixture cancels it at the end of the test
            self.chat.stuck.append(asyncio.current_task())
            await asyncio.Event().wait()
        self.inbox.extend(json.loads(frame) for frame in frames)

    def close_with(self, code: int, reason: str) -> None:
        self.closed_with = (code, reason)

    # -- the client's side
    def send(self, type_: str, data: dict[str, Any] | None = None, **envelope: Any) -> str:
        """Send one frame (as JSON text), handled at once; returns its id."""
        request_id, frame = self.frame(type_, data, **envelope)
        run_now(self.chat.service.receive(self.connection, frame, protocol.peek(frame)[1]))
        return request_id

    async def asend(self, type_: str, data: dict[str, Any] | None = None, **envelope: Any) -> str:
        """Send one frame and await its handling (a bus that does I/O, e.g. Redis); returns its id."""
        request_id, frame = self.frame(type_, data, **envelope)
        await self.chat.service.receive(self.connection, frame, protocol.peek(frame)[1])
        return request_id

    def frame(self, type_: str, data: dict[str, Any] | None = None, **envelope: Any) -> tuple[str, str]:
        """(its id, one client frame as JSON text)."""
        self._ids += 1
        request_id = envelope.pop("id", None) or f"{type_.lower()}-{self._ids}"
        return request_id, json.dumps({"type": type_, "id": request_id, **envelope, "data": data if data is not None else {}})

    def take(self, *types: str) -> list[dict[str, Any]]:
        """Remove and return the received frames of these types (all frames when none given)."""
        taken = [f for f in self.inbox if not types or f["type"] in types]
        self.inbox = [f for f in self.inbox if not any(f is t for t in taken)]
        return taken

    def one(self, type_: str) -> dict[str, Any]:
        """The one received frame of this type (removed); fails on none or several."""
        frames = self.take(type_)
        assert len(frames) == 1, (type_, frames, self.inbox)
        return frames[0]

    def tokens(self) -> list[dict[str, Any]]:
        """Every Token frame received so far (left in the inbox)."""
        return [f for f in self.inbox if f["type"] == "Token"]

    def answer(self, message_id: str) -> list[dict[str, Any]]:
        """The Token frames received of one answer, in order."""
        return [f for f in self.inbox if f["type"] == "Token" and f["data"]["message_id"] == message_id]

    async def join(self, room: str, **data: Any) -> dict[str, Any]:
        """Join and settle; returns Joined (removed from the inbox, the rest stays)."""
        request_id = self.send("Join", data, room=room)
        await self.chat.settle()
        joined = self.one("Joined")
        assert joined["id"] == request_id
        return joined

    async def ask(self, room: str | None, prompt: str, **data: Any) -> tuple[dict[str, Any], str]:
        """Generate and wait for the answer to end; returns (the final Token's data, the text)."""
        request_id = self.send("Generate", {"prompt": prompt, **data}, **({"room": room} if room else {}))
        await self.chat.settle()
        acks = [f for f in self.take("Ack", "Error") if f.get("id") == request_id]
        assert len(acks) == 1 and acks[0]["type"] == "Ack", acks
        tokens = self.answer(acks[0]["data"]["message_id"])
        assert tokens and tokens[-1]["data"]["is_final"], tokens
        return tokens[-1]["data"], "".join(t["data"]["text"] for t in tokens)

    def drop(self) -> None:
        """The socket closes under the client (what the handler's on_close does)."""
        run_now(self.chat.service.disconnect(self.connection))


class Chat:
    """A ChatService over the memory bus and a SQLite store (or the given `bus`), answered by the stand-in."""

    def __init__(
        self, loop: asyncio.AbstractEventLoop, root: Path, limits: ServiceLimits, engine: EngineSettings,
        cleanup_delay: float, standin: dict[str, Any], bus: RoomBus | None = None,
    ) -> None:
        self.bus = bus or MemoryRoomBus(
            HistoryStore(root / "history.sqlite"), limits.replay_events, cleanup_delay,
            limits.replay_bytes, limits.replay_memory, limits.max_rooms,
        )
        tokens = TokenSteps()
        self.backend = StandIn(engine, tokens, loop, **standin)
        self.service = ChatService(limits, self.bus, self.backend, tokens, version="test")
        self.backend.start()
        self.stuck: list[asyncio.Task[Any] | None] = []  # writes of paused clients

    def client(self, user: Identity = ADA) -> FakeClient:
        return FakeClient(self, user)

    async def settle(self, until: Callable[[], bool] | None = None, timeout: float = 5.0) -> None:
        """Run the loop until every answer has ended and every queued frame is written; or,
        given `until`, only until `until()` holds (so a test can act in the middle of an answer)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        busy = (lambda: not until()) if until is not None else (lambda: bool(self.backend.running))
        while busy():
            assert loop.time() < deadline, "the service did not settle"
            await asyncio.sleep(0)
        if until is None:
            await self.flush()  # each connection's writer task empties its queue in one turn

    async def flush(self) -> None:
        """Let the connections write what is queued (a stand-in with a `delay` makes no step meanwhile):
        a disconnect's task, its `Presence`, the end-of-turn flush and the write each take a turn."""
        for _ in range(8):
            await asyncio.sleep(0)

    def stored(self, room: str) -> list[dict[str, Any]]:
        """The room's stored messages' data, oldest first."""
        return [data for _, data in run_now(self.bus.messages(room, limit=500))]

    async def close(self) -> None:
        self.backend.close()
        await self.service.close()


# Small and quick, as the integration tests' BASE_CONFIG; tests override what they are about.
LIMITS = ServiceLimits(system_prompt="SYS", default_max_tokens=8, max_tokens=64, rate_limit=0)
ENGINE = EngineSettings(n_ctx=4096, parallel=4, max_queue=4, max_tokens=1024)
