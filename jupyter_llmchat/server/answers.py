"""Answers from the model: from a `Generate` to the stored assistant message.

The life of an answer: admission (idempotent per request id), the question posted into the
room, the context built by the policy (`prompt_context`), the request handed to the model
backend, every token fanned out to the room (or to the asker, for a private answer), and
the finished answer stored. Runs on the event loop thread only, like the service.

Tokens arrive from the backend in steps (one decode step's events) through its sink,
`token_steps.TokenSteps`, which hands them here in the order they came: each step's tokens
of a room go out in one `emit_many` (one round trip on a shared bus), and an answer's tokens
only after its question is posted.

An answer in progress is kept about once a second (`PERSIST_EVERY`) as far as it got,
marked interrupted (`finish_reason` "error", `error` `INTERRUPTED`), through the room bus's
`store_in_progress`: if the process dies (`kill -9`, a crash) that is what the history
keeps. The final store replaces it under the same message id.

When the room bus fails an answer's tokens (Redis away or stalled), the answer is stopped
and, once the bus answers again, ended in its room with `finish_reason` "error" and stored
as far as it got (`end_unended`, every second): no member is left with an answer that never
ends.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import msgspec

from .. import protocol
from ..engine.types import EngineUnavailable, GenerationRequest, QueueFull, SamplingConfig, TokenEvent
from ..protocol import Ack, Author, ChatError, Text, Timings, Token, Usage
from .connection import Connection, Identity
from .messages import ASSISTANT_USERNAME, INTERRUPTED, new_message_id, now_iso, post_text, question_fields
from .prompt_context import Question, build_context
from .request_ids import RequestIds
from ..room_bus.bus import RoomBus
from ..room_bus.redaction import tombstone
from .room_settings import RoomSettingsBook
from .token_steps import TokenSteps

if TYPE_CHECKING:  # pragma: no cover
    from ..backends.model_backend import ModelBackend
    from .settings import ServiceLimits

_FINISHED_REMEMBERED = 4096  # finished message ids remembered, to answer Cancel with 409
PERSIST_EVERY = 1.0  # seconds between keeps of an answer in progress (what a crash may lose)


@dataclass
class Generation:
    """A running answer: who asked, where its tokens go, what it has said so far."""

    message_id: str
    owner: Identity
    request_id: str | None
    room: str | None
    connection: Connection | None
    in_reply_to: str | None = None
    regenerates: str | None = None
    parts: list[str] = field(default_factory=list)
    first_seq: int | None = None
    ready: asyncio.Event = field(default_factory=asyncio.Event)  # set once the question is in the room
    persisted_at: float = field(default_factory=time.monotonic)  # when it was last kept in progress
    context_cut: bool = False  # the context was cut by characters before it reached the model
    deleted: bool = False  # removed while it streamed: stored as a tombstone when it ends
    final: TokenEvent | None = None  # its final event, once that went out
    final_seq: int | None = None  # the seq of its final Token in the room
    bus_failed: str | None = None  # why the room bus failed it mid-stream (it ends with "error")


class Answers:
    """Every answer of one server, running or recently finished."""

    def __init__(
        self,
        bus: RoomBus,
        settings: RoomSettingsBook,
        limits: ServiceLimits,
        backend: ModelBackend,
        tokens: TokenSteps,
    ) -> None:
        self.bus = bus
        self.settings = settings
        self.limits = limits
        self.backend = backend
        tokens.deliver_to(self._emit_step)  # `tokens` is the backend's sink
        self.running: dict[str, Generation] = {}
        self.request_ids = RequestIds(limits.generate_id_window)
        self._finished: OrderedDict[str, str] = OrderedDict()  # message_id -> owner username
        self._unended: dict[str, Generation] = {}  # room answers to end once the room bus is back
        self.log = logging.getLogger("jupyter_llmchat")

    # -- asking -------------------------------------------------------------------------------

    async def generate(
        self,
        *,
        owner: Identity,
        request: protocol.GenerateData,
        room: str | None,
        connection: Connection | None,
        request_id: str | None,
        author: Author,
    ) -> Ack:
        """Queue an answer; returns the `Ack` data. A retried request id gets its first Ack
        while the answer runs, `Error 409` once it has ended (`request_ids`)."""
        key = self.request_ids.key(owner.username, request_id)
        if key is not None:
            retried = self.request_ids.retried(key, self.running.__contains__)
            if retried is not None:
                return retried
        backend = self.backend
        if not backend.loaded:
            reason = getattr(backend, "load_error", None) or "the model is still loading"
            raise ChatError(503, f"model not available: {reason}")
        self._admit(owner)
        question, asked = await self._question(owner, request, room)
        settings = await self.settings.get(room) if room is not None else None
        context = await build_context(
            self.bus,
            question,
            system_prompt=(settings.system_prompt if settings else "") or self.limits.system_prompt,
            context=settings.context if settings else "own",
            history_messages=self.limits.history_messages,
        )
        # Each asker's thread in a room is its own conversation: its own KV prefix to reuse.
        shared = settings is not None and settings.context == "shared"
        cache_key = None if room is None else room if shared else f"{room}\n{owner.username}"
        message_id = new_message_id()
        # The question's id is known before it is posted: its thread's KV state saved to
        # disk is labelled with every message it holds (deleting one removes the state).
        question_id = asked or new_message_id()
        asking = GenerationRequest(
            message_id, context.turns, self.sampling(request.config), cache_key,
            user=owner.username, owner=owner.owner,  # the server's owner: the queue's reserve
            persist=room is not None and not shared, room=room, holds=(*context.message_ids, question_id),
        )
        try:
            position = backend.submit(asking)
        except QueueFull as error:
            raise ChatError(429, f"generation queue is full: {error}") from None
        except EngineUnavailable as error:
            raise ChatError(503, f"model not available: {error}") from None
        generation = Generation(
            message_id, owner, request_id, room, connection, regenerates=request.regenerate, context_cut=context.cut
        )
        self.running[message_id] = generation
        ack = Ack(message_id, position)
        if key is not None:
            self.request_ids.remember(key, ack)
        if room is not None:
            try:
                if asked is not None:  # regenerating: the question is in the room already
                    generation.in_reply_to = asked
                else:
                    generation.in_reply_to, _ = await post_text(
                        self.bus, room, request.prompt, author, question_id, **question_fields(request)
                    )
                await self.bus.answer_started(room, message_id, self._answer_text(generation, ""))
            except Exception:  # the room bus failed: nobody could see this answer
                self.running.pop(message_id, None)
                if key is not None:
                    self.request_ids.forget(key)  # a retry of this request asks again
                self._stop(message_id)
                raise
            finally:
                generation.ready.set()
        else:
            generation.ready.set()
        return ack

    def _admit(self, owner: Identity) -> None:
        """Error 429 when `owner` already has `max_answers_per_user` answers waiting or
        running: one user cannot fill the queue that everyone shares."""
        cap = self.limits.max_answers_per_user
        if cap <= 0:
            return
        mine = sum(1 for generation in self.running.values() if generation.owner.username == owner.username)
        if mine >= cap:
            raise ChatError(
                429,
                f"you have {mine} answers waiting or running (max_answers_per_user={cap}); "
                "wait for one to finish or cancel one",
            )

    async def _question(
        self, owner: Identity, request: protocol.GenerateData, room: str | None
    ) -> tuple[Question, str | None]:
        """The question to answer, and the id of the stored one when it is asked again."""
        attachments = tuple(request.attachments or ())
        if room is None:
            return Question(None, owner.username, request.prompt, 0, attachments=attachments), None
        head, _ = await self.bus.head(room)
        if request.regenerate is None:
            return (
                Question(room, owner.username, request.prompt, head + 1, request.new_thread, request.reply_to, attachments),
                None,
            )
        found = await self.bus.message(room, message_id=request.regenerate)
        answer = found[1] if found is not None and found[1].author.kind == "assistant" else None
        asked = await self.bus.message(room, message_id=answer.in_reply_to or "") if answer is not None else None
        if asked is None or asked[1].deleted:
            raise ChatError(404, f"no stored answer {request.regenerate!r} in room {room!r} to regenerate")
        seq, text = asked
        if text.author.username != owner.username:
            raise ChatError(403, "only the user who asked can regenerate this answer")
        question = Question(room, owner.username, text.content, seq, text.thread_start, text.reply_to, attachments)
        return question, text.message_id

    def sampling(self, config: protocol.GenerateConfig | None) -> SamplingConfig:
        """The server's defaults overlaid with what the client set; max_tokens is capped."""
        base = self.limits.sampling
        values = {name: getattr(base, name) for name in base.__dataclass_fields__}
        values["max_tokens"] = self.limits.default_max_tokens
        if config is not None:
            for name in values:
                value = getattr(config, name, None)
                if value is not None:
                    values[name] = tuple(value) if name == "stop" else value
        values["max_tokens"] = min(values["max_tokens"], self.limits.max_tokens)
        return SamplingConfig(**values)

    # -- stopping -------------------------------------------------------------------------------

    def cancel(self, user: Identity, message_id: str) -> None:
        generation = self.running.get(message_id)
        if generation is None:
            owner = self._finished.get(message_id)
            if owner is None:
                raise ChatError(404, f"unknown message {message_id!r}")
            if owner != user.username:
                raise ChatError(403, "only the user who asked can cancel this generation")
            raise ChatError(409, f"message {message_id!r} has already finished")
        if generation.owner.username != user.username:
            raise ChatError(403, "only the user who asked can cancel this generation")
        self._stop(message_id)

    def stop(self, message_id: str) -> None:
        """Stop an answer whoever asked it (a moderator deleted it)."""
        self._stop(message_id)

    def cancel_private(self, connection: Connection) -> None:
        """A closed connection's private answers: nobody could receive them any more."""
        for generation in list(self.running.values()):
            if generation.connection is connection:
                self._stop(generation.message_id)

    async def cancel_room(self, room: str) -> None:
        for message_id in await self.bus.running_answers(room):
            self._stop(message_id)

    def _stop(self, message_id: str) -> None:
        self.backend.cancel(message_id)

    # -- tokens ----------------------------------------------------------------------------------

    async def _emit_step(self, events: list[TokenEvent]) -> None:
        """Stream each event to its room or its asker: a room's tokens in one `emit_many`."""
        by_room: dict[str, list[tuple[Generation, TokenEvent, Token]]] = {}
        for event in events:
            generation = self.running.get(event.message_id)
            if generation is None:
                continue
            await generation.ready.wait()
            if event.is_final:
                self.running.pop(event.message_id, None)
                self._finished[event.message_id] = generation.owner.username
                while len(self._finished) > _FINISHED_REMEMBERED:
                    self._finished.popitem(last=False)
            if generation.bus_failed is not None:  # ended in its room by `end_unended`, not here
                self._lost(generation, event)
                continue
            data = token_data(event, generation.context_cut)
            if generation.deleted:  # removed while streaming: what is left of it says nothing
                data = msgspec.structs.replace(data, text="")
            if generation.room is not None:
                by_room.setdefault(generation.room, []).append((generation, event, data))
            elif generation.connection is not None:
                generation.connection.send(protocol.encode("Token", data, id=generation.request_id))
        for room, tokens in by_room.items():
            try:
                seqs = await self.bus.emit_many(room, [("Token", data) for _, _, data in tokens])
            except Exception as error:  # the room bus failed: stop these answers, end them when it is back
                self.log.warning("llmchat: tokens of room %r could not be emitted (%s); stopping its answers", room, error)
                reason = error.message if isinstance(error, ChatError) else "the room bus failed"  # says which and why
                for generation, event, _ in tokens:
                    if generation.bus_failed is None:
                        generation.bus_failed = f"interrupted: {reason}"
                        self._stop(generation.message_id)
                    self._lost(generation, event)
                continue
            for (generation, event, _), seq in zip(tokens, seqs):
                if generation.first_seq is None:
                    generation.first_seq = seq
                generation.parts.append(event.text)
                if event.is_final:
                    generation.final, generation.final_seq = event, seq
                    await self._end(generation)
                elif time.monotonic() - generation.persisted_at >= PERSIST_EVERY:
                    await self._store_in_progress(generation, seq)

    def _lost(self, generation: Generation, event: TokenEvent) -> None:
        """An event of an answer the room bus failed: kept for the stored answer, and its final one for `end_unended`."""
        generation.parts.append(event.text)
        if event.is_final:
            self._unended[generation.message_id] = generation

    async def _end(self, generation: Generation) -> None:
        """Store an answer whose final token went out; if the bus fails now, `end_unended` stores it later."""
        try:
            await self._store(generation)
        except Exception as error:
            self.log.warning("llmchat: answer %s could not be stored yet: %s", generation.message_id, error)
            self._unended[generation.message_id] = generation

    async def end_unended(self) -> None:
        """End the answers the room bus failed mid-stream, once it answers again: a final
        `Token` with `finish_reason: "error"` saying why, and the answer stored as far as it
        got. Called every second (the service's sweep); what still fails waits for the next."""
        for message_id, generation in list(self._unended.items()):
            try:
                if generation.final_seq is None:  # storing again under the same id is harmless; emitting is not
                    final = Token(message_id, len(generation.parts), "", True, "error", Usage(), Timings(), generation.bus_failed)
                    generation.final_seq = await self.bus.emit(generation.room or "", "Token", final)
                await self._store(generation)
            except Exception:
                continue
            del self._unended[message_id]
            self.log.info("llmchat: answer %s ended after the room bus failed it", message_id)

    def _answer_text(self, generation: Generation, content: str, event: TokenEvent | None = None) -> Text:
        """The assistant `Text` an answer is stored as."""
        return Text(
            message_id=generation.message_id,
            content=content,
            author=Author(ASSISTANT_USERNAME, model_name(self.backend), "assistant"),
            created=now_iso(),
            in_reply_to=generation.in_reply_to,
            finish_reason=event.finish_reason if event is not None else None,
            regenerates=generation.regenerates or None,
            error=(event.error or None) if event is not None else None,  # why it ended early, e.g. "server shutting down": shown with the answer
            truncated=(event.truncated if event is not None else False) or generation.context_cut,
        )

    async def _store(self, generation: Generation) -> None:
        """Store an ended answer as an assistant `Text` at the seq of its first token (its
        final token's seq is the room's head then); one the bus failed says so."""
        room, seq = generation.room or "", generation.final_seq or 0
        await self.bus.answer_ended(room, generation.message_id)
        content = "".join(generation.parts)
        if not content:
            await self.bus.save_head(room, seq)
            return
        text = self._answer_text(generation, content, generation.final)
        if generation.bus_failed is not None:
            text = msgspec.structs.replace(text, finish_reason="error", error=generation.bus_failed)
        if generation.deleted:
            text = tombstone(msgspec.to_builtins(text))
        await self.bus.store_message(room, generation.first_seq or seq, text, seq)

    async def _store_in_progress(self, generation: Generation, seq: int) -> None:
        """Keep the answer so far, marked interrupted: what stays if the process dies now."""
        generation.persisted_at = time.monotonic()
        content = "".join(generation.parts)
        if content and not generation.deleted:
            text = msgspec.structs.replace(self._answer_text(generation, content), finish_reason="error", error=INTERRUPTED)
            await self.bus.store_in_progress(generation.room or "", generation.first_seq or seq, text, seq)


def token_data(event: TokenEvent, context_cut: bool = False) -> Token:
    """A `Token` frame's data; the final one carries the finish reason, the figures and
    whether the prompt was cut to fit (`context_cut`: by characters, before the model)."""
    if not event.is_final:
        return Token(event.message_id, event.index, event.text, False)
    return Token(
        event.message_id, event.index, event.text, True, finish_reason=event.finish_reason,
        usage=msgspec.convert(event.usage or {}, Usage), timings=msgspec.convert(event.timings or {}, Timings),
        error=event.error or None, truncated=event.truncated or context_cut,
    )


def model_name(backend: Any) -> str:
    return getattr(backend, "model_name", "") or "unknown"
