"""One decode step for every running sequence: continuous batching like llama.cpp's server.

A step feeds the pending token of every generating sequence (one logits row each) and a
chunk of the prompts still being evaluated, within `n_batch` tokens. A long prompt is thus
spread over several steps and never freezes the streams already running; a new request
joins at the next step; a finished or cancelled sequence leaves at once. The step is one
`llama_decode`, or one per generating sequence when that measured faster (grouping.py).
Runs only on the engine's decode thread, which owns the llama context.
"""

from __future__ import annotations

import logging
import time
from .batch import Batch
from .detokenize import TextStream
from .grouping import SPLIT, OutputGrouping
from .job import Job
from .kv_disk import KVDisk
from .kvcache import SlotTable
from .model import LoadedModel, stop_texts
from .prompt import PromptBuilder
from .sampling import SequenceSampler
from .threads import ThreadPolicy
from .types import FinishReason, TokenEvent
from .llama_api import llama as _llama

# Prompt tokens per step while other sequences are generating, or several prompts wait.
# Prefill runs at ~400 tok/s on one core here, so 64 tokens pause the running streams for
# about a sixth of a second per step instead of 1.3 s for a full 512-token chunk, and a
# short question asked meanwhile waits at most that long before its own step: with 128, a
# question of ~25 new tokens waited up to 5x its quiet time behind four long prompts
# (bench/abuse.py (b)). Steps of 64 tokens cost about as much per token as larger ones
# (the matrix products are already batched; the per-step overhead is a few ms).
PREFILL_CHUNK_WHILE_STREAMING = 64
# ...unless what is left of the shortest waiting prompts fits in this many: then all of
# them go whole in one step. The running streams pause as long in total either way (prompt
# evaluation costs the same per token, split or not), and the waiting questions get their
# first token a step sooner: several short questions asked together do not queue behind
# each other, nor behind a long prompt (a question whose prompt is not cached, ~160 tokens,
# goes in one step, not three).
PREFILL_FINISH_WHILE_STREAMING = 256
# A prompt evaluated alone goes in steps of at most this many tokens (not all of n_batch):
# a question that comes in meanwhile waits for half as long a step before its own. A short
# conversation's whole prompt still goes in one step, as with 512 (greedy answers depend on
# how a prompt was split: the tests' reference answers are computed that way).
PREFILL_CHUNK_ALONE = 256
# A thread's KV state is saved to disk only from this many tokens on: a shorter prompt is
# evaluated again in well under a second, and each save costs the prompt one more step.
KV_DISK_MIN_TOKENS = 256


class Scheduler:
    """Owns the batch, the slots and the running jobs; `step()` advances them all."""

    def __init__(
        self,
        model: LoadedModel,
        builder: PromptBuilder,
        log: logging.Logger,
        threads: ThreadPolicy,
        prompt_budget: int = 0,
        disk: KVDisk | None = None,
    ):
        self.model = model
        self.builder = builder
        # Most tokens of one prompt: by default its share of the KV cache, so that prompts
        # running together never fill the cache (docs/context.md).
        self.prompt_budget = min(prompt_budget or model.n_ctx // model.n_seq_max, model.n_ctx_seq - 1)
        self.log = log
        self.disk = disk
        self.slots = SlotTable(model, disk)
        self.batch = Batch(model.n_batch, model.n_seq_max)
        self.jobs: list[Job] = []  # admitted, in admission order
        self.finished: list[Job] = []  # finished during the current step (engine bookkeeping)
        self.events: list[TokenEvent] = []
        # counters (read by Engine.stats under its lock)
        self.tokens_generated = 0
        self.prompt_tokens_evaluated = 0
        self.prompt_tokens_cached = 0
        self._groupings: dict[int, OutputGrouping] = {}  # by thread count (see `grouping`)
        self._pinned: OutputGrouping | None = None  # `pin_grouping`
        self.prefill_chunk = PREFILL_CHUNK_WHILE_STREAMING
        self.prefill_finish = PREFILL_FINISH_WHILE_STREAMING
        self._decode = _llama().llama_decode
        self.threads = threads
        self._n_threads = threads.threads
        self._ctx = model.ctx
        self._stop_ids = model.stop_ids
        self._stop_texts = tuple(dict.fromkeys(builder.formatter.extra_stops + stop_texts(model, builder.formatter.source)))

    # -- admission ----------------------------------------------------------------------

    def free_slots(self) -> int:
        return self.slots.free_count()

    def admit(self, job: Job) -> None:
        """Tokenize (trimming to the context), pick a slot, reuse what the KV cache has."""
        req = job.request
        job.t_admit = time.perf_counter()
        if job.cancelled:
            self._finish(job, "cancelled")
            return
        try:
            built = self.builder.build(req.turns, self.model.n_ctx_seq, job.max_tokens, self.prompt_budget)
        except Exception as exc:
            self.log.warning("cannot build the prompt of %s: %s", req.message_id, exc)
            self._finish(job, "error", error=f"cannot build the prompt: {exc}")
            return
        if not built.tokens:
            self._finish(job, "error", error="the prompt does not fit in the model's context")
            return
        job.prompt = built.tokens
        job.budget = built.max_tokens
        job.truncated = built.cut
        if built.cut:
            self.log.debug(
                "prompt of %s trimmed: %d turns dropped, truncated=%s, %d tokens",
                req.message_id, built.dropped_turns, built.truncated, len(built.tokens),
            )
        slot, n_cached = self.slots.acquire(job, job.prompt, req.cache_key)
        job.slot = slot
        job.n_cached = job.n_fed = n_cached
        job.snap_at = self._snapshot_point(job, built.stable, built.truncated or built.dropped_system)
        if job.snap_at and job.snap_at == n_cached:
            self._snapshot(job)
        self.prompt_tokens_cached += n_cached
        cfg = req.config
        job.sampler = SequenceSampler(cfg, self.model.n_vocab)
        if cfg.repeat_penalty != 1.0:
            job.sampler.accept_prompt(job.prompt)
        echoes = self.builder.formatter.answer_stops(req.turns)
        job.stream = TextStream(tuple(cfg.stop), hidden=self._stop_texts, after_text=echoes)
        self.jobs.append(job)

    def _snapshot_point(self, job: Job, stable: int, cut: bool) -> int:
        """Where this prompt's KV state is saved to disk (0: nowhere): at the prefix the
        thread's next prompt repeats. With Gemma 3's sliding window a saved state can only
        be continued from its last token, so the prompt is evaluated up to that point,
        copied, then finished (kv_disk.py)."""
        req = job.request
        if self.disk is None or not req.persist or cut or stable < KV_DISK_MIN_TOKENS:
            return 0
        if stable < job.n_fed or stable >= len(job.prompt) or self.disk.has(job.prompt[:stable]):
            return 0
        assert job.slot is not None
        self.disk.prepare(self._ctx, job.slot.seq, job.n_fed, stable)  # its copy buffer, made while the prompt is evaluated
        return stable

    def _snapshot(self, job: Job) -> None:
        req = job.request
        assert self.disk is not None and job.slot is not None
        self.disk.snapshot(self._ctx, job.slot.seq, job.prompt[: job.snap_at], req.room, req.holds, req.cache_key)
        job.snap_at = 0

    # -- the step -------------------------------------------------------------------------

    def has_work(self) -> bool:
        return bool(self.jobs)

    def step(self) -> list[TokenEvent]:
        """Cancel what was cancelled, decode one token for every generating sequence plus
        a prompt chunk, sample, and return the events (including those of jobs that ended
        at admission)."""
        for job in [j for j in self.jobs if j.cancelled]:
            self._finish(job, "cancelled")
        if not self.jobs:
            return self._take_events()
        self._apply_threads()
        gen = [j for j in self.jobs if j.pending is not None]
        prefill = any(j.prefilling for j in self.jobs)
        k = len(gen)
        plan = self.grouping.choose(k)
        if plan == SPLIT:
            calls = [gen[:1]] + [[j] for j in gen[1:]]
        else:
            calls = [gen]
        t0 = time.perf_counter()
        clean = not prefill
        for i, call in enumerate(calls):
            parts = self._decode_call(call, with_prefill=(i == 0))
            if parts is None:  # KV trouble or a failed decode: the rest waits for next step
                clean = False
                break
            self._commit(parts)
        if clean and k:
            self.grouping.record(k, plan, (time.perf_counter() - t0) / k)
        return self._take_events()

    @property
    def grouping(self) -> OutputGrouping:
        """Which batch shape is faster depends on the threads: each count keeps what it
        measured, so switching back and forth does not measure everything again."""
        if self._pinned is not None:
            return self._pinned
        return self._groupings.setdefault(self._n_threads, OutputGrouping())

    def pin_grouping(self, plan: str | None) -> None:
        """Use `plan` (JOINT or SPLIT) for every step whatever the timings, or measure again
        (None): the plan changes greedy near-ties, so runs that must compare pin it."""
        self._pinned = None if plan is None else OutputGrouping(plan)

    def _apply_threads(self) -> None:
        """Decode with the threads the rest of the machine leaves free (threads.py)."""
        n = self.threads.choose()
        if n != self._n_threads:
            _llama().llama_set_n_threads(self._ctx, n, n)  # generation and prompt evaluation
            self._n_threads = n

    def _fill(self, gen: list[Job], with_prefill: bool) -> list[tuple[Job, int, int]]:
        """Fill the batch; return (job, logits row or -1, prompt tokens fed) per participant."""
        batch = self.batch
        batch.clear()
        parts: list[tuple[Job, int, int]] = []
        for job in gen:
            if job.done or job.pending is None:
                continue
            slot = job.slot
            parts.append((job, batch.add(job.pending, len(slot.tokens), slot.seq, True), 0))
        if not with_prefill:
            return parts
        # Shortest rest first: a short question asked while long prompts are evaluated gets
        # its first token at the next step, not after theirs, and that step holds only the
        # prompts it finishes (a long prompt waits at most a short step per short question).
        pending = sorted((j for j in self.jobs if j.prefilling), key=lambda j: len(j.prompt) - j.n_fed)
        if not pending:
            return parts
        # While other sequences stream, or several prompts wait, the shortest prompts that can
        # finish together within `prefill_finish` go whole in one step; otherwise a small
        # chunk keeps the steps short: the streams pause less, and a question that comes in
        # meanwhile waits for a short step, not a full one.
        room = min(batch.free, PREFILL_CHUNK_ALONE)
        left = sum(len(j.prompt) - j.n_fed for j in pending)
        if gen or len(pending) > 1:
            whole = 0
            for job in pending:
                rest = len(job.prompt) - job.n_fed
                if whole + rest > self.prefill_finish:
                    break
                whole += rest
            room = min(batch.free, whole or self.prefill_chunk)
        # Make room in the KV cache, evicting idle room caches if needed.
        need = batch.n + min(room, left)
        while self.slots.cells_in_use() + need > self.model.n_ctx and self.slots.evict_one():
            pass
        finished_one = False
        for job in pending:
            if room <= 0:
                break
            take = min(room, len(job.prompt) - job.n_fed)
            if job.n_fed < job.snap_at:
                take = min(take, job.snap_at - job.n_fed)  # the step ends where the state is saved
            last = job.n_fed + take == len(job.prompt)
            if finished_one and not last:
                break  # a step that ends a short prompt carries no chunk of a long one: it stays short
            finished_one = finished_one or last
            if last and batch.n_outputs >= self.model.n_seq_max:
                take -= 1  # never ask for more logits rows than the context reserved
                last = False
                if take <= 0:
                    break
            idx = batch.add_span(job.prompt[job.n_fed : job.n_fed + take], job.n_fed, job.slot.seq, last)
            parts.append((job, idx if last else -1, take))
            room -= take
        return parts

    def _decode_call(self, gen: list[Job], with_prefill: bool) -> list[tuple[Job, int, int]] | None:
        """One `llama_decode`; on a full KV cache evict caches, then drop the prompt chunk,
        then end the longest sequence. None when nothing was decoded."""
        parts = self._fill(gen, with_prefill)
        if self.batch.n == 0:
            return []
        ret = self._decode(self._ctx, self.batch.as_struct())
        if ret == 0:
            return parts
        if ret != 1:
            self._fail_batch(ret)
            return None
        while self.slots.evict_one():
            if self._decode(self._ctx, self.batch.as_struct()) == 0:
                return parts
        if any(fed for _, _, fed in parts):
            parts = self._fill(gen, with_prefill=False)
            if self.batch.n and self._decode(self._ctx, self.batch.as_struct()) == 0:
                return parts
        # Every cell belongs to a running sequence: end the one holding the most.
        victim = max(self.jobs, key=lambda j: len(j.slot.tokens) if j.slot else 0)
        self.log.warning("KV cache full (n_ctx=%d): ending %s early", self.model.n_ctx, victim.message_id)
        if victim.n_gen:
            self._finish(victim, "length")
        else:
            self._finish(victim, "error", error="the model's context is full; try again shortly")
        return None

    def _fail_batch(self, ret: int) -> None:
        """A fatal decode error: the KV cache is unreliable, so every running job ends and
        every cached prefix is forgotten."""
        self.log.error("llama_decode failed with %d", ret)
        for job in list(self.jobs):
            self._finish(job, "error", error=f"decoding failed (llama_decode returned {ret})")
        self.slots.reset_all()

    def _commit(self, outputs: list[tuple[Job, int, int]]) -> None:
        """Record what entered the KV cache, then sample every sequence that has logits."""
        now = time.perf_counter()
        ctx = self._ctx
        fed_prompt = 0
        for job, idx, fed in outputs:
            slot = job.slot
            if fed:
                slot.tokens.extend(job.prompt[job.n_fed : job.n_fed + fed])
                job.n_fed += fed
                fed_prompt += fed
                if job.n_fed == job.snap_at:
                    self._snapshot(job)
                elif job.n_fed < job.snap_at and self.disk is not None:
                    self.disk.prepare(self._ctx, slot.seq, job.n_fed, job.snap_at)
            else:
                slot.tokens.append(job.pending)
                job.pending = None
        self.prompt_tokens_evaluated += fed_prompt
        piece = self.model.piece
        stop_ids = self._stop_ids
        for job, idx, fed in outputs:
            if idx < 0 or job.done:
                continue
            tok = job.sampler.sample(ctx, idx)
            job.n_sampled += 1
            job.t_last = now
            if job.t_first is None:
                job.t_first = now
            if tok in stop_ids:
                self._finish(job, "stop")
                continue
            job.n_gen += 1
            self.tokens_generated += 1
            stream = job.stream
            text = stream.push(piece(tok))
            if stream.stopped:
                self._finish(job, "stop", text)
            elif job.n_gen >= job.budget or len(job.slot.tokens) + 1 >= self.model.n_ctx_seq:
                self._finish(job, "length", text)
            else:
                job.pending = tok
                if text:
                    self.events.append(job.event(text))

    # -- endings ----------------------------------------------------------------------------

    def _finish(self, job: Job, reason: FinishReason, text: str = "", error: str | None = None) -> None:
        """Emit the final event and give the slot back (keeping the room's KV prefix)."""
        if job.done:
            return
        if job.stream is not None and reason != "error":
            text += job.stream.flush()
        self.events.append(job.final_event(text, reason, error))
        if job.sampler is not None:
            job.sampler.close()
        if job.slot is not None:
            keep = reason != "error" and job.request.cache_key is not None
            self.slots.release(job.slot, keep)
        if job in self.jobs:
            self.jobs.remove(job)
        self.finished.append(job)

    def fail(self, job: Job, error: str) -> None:
        """End one job with an error outside a step (its event goes out with the next step)."""
        if job.slot is not None and job.slot.holder is job:
            self.slots.truncate(job.slot, 0)
        self._finish(job, "error", error=error)

    def finish_all(self, reason: FinishReason, error: str | None = None) -> list[TokenEvent]:
        """End every admitted job (shutdown, unexpected exception)."""
        for job in list(self.jobs):
            self._finish(job, reason, error=error)
        return self._take_events()

    def _take_events(self) -> list[TokenEvent]:
        events, self.events = self.events, []
        return events
