"""Building the token prompt of a request, trimmed to its budget.

A room's history grows without bound; the model's context does not, and it is shared by
every running answer. Each prompt has a budget of tokens (`prompt_budget`, by default its
share of the KV cache: n_ctx / parallel), and `prompt + max_tokens` must fit the sequence's
context. We keep the system prompt and the newest turns: the oldest non-system turns are
dropped until both hold, and if the newest turn alone is still too long its *beginning*
is cut (the end of a message is usually the question).

Old turns go in blocks, not one by one: dropping the oldest exchange on every turn would
change the start of every prompt, so no turn could reuse the previous one's KV cache (in
memory or on disk). A thread is cut only at *cut points*, user turns chosen by their own
text (`is_cut_point`, one in `CUT_EVERY` on average), at the first one that leaves a prompt
within the budget; the start then stays where it is for the next few turns. Being chosen
by the text alone, the same turns are cut points whatever the window of history the server
sent (it cuts its own character limit at the same points, server/prompt_context.py).
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from .chat_format import ChatFormatter, FormattedPrompt, merge_turns, split_system
from .types import ChatTurn

Tokenize = Callable[[str], list[int]]  # plain text -> ids (no special tokens parsed)
Detokenize = Callable[[list[int]], str]

CUT_EVERY = 4  # one user turn in this many (on average) is a place a long thread may be cut


def cut_level(text: str) -> int:
    """How good a place to start a thread that is too long the user turn with this text is:
    2 for one turn in `CUT_EVERY`, 1 for one in two (these include the first), else 0.

    Chosen by the text alone (a hash), so the engine and the server agree, whatever
    history each of them sees. A thread is cut at the first turn of the best level that
    leaves it within its limit: when the level-2 turns are too far apart for the limit,
    the level-1 turns still keep the start for a turn or two (better than every turn)."""
    h = zlib.crc32(text.strip().encode("utf-8", "replace"))
    return 2 if h % CUT_EVERY == 0 else 1 if h % 2 == 0 else 0


def is_cut_point(text: str) -> bool:
    """A best place to cut (`cut_level` 2)."""
    return cut_level(text) == 2


def first_cut(texts: Sequence[str | None], start: int) -> int:
    """The index of the first text at or after `start` of the best `cut_level` there
    (None: not a place to cut); `start` when there is none."""
    for level in (2, 1):
        for i in range(start, len(texts)):
            text = texts[i]
            if text is not None and cut_level(text) >= level:
                return i
    return start


@dataclass(frozen=True)
class BuiltPrompt:
    """The tokens to evaluate, and how much of the conversation had to go."""

    tokens: list[int]
    max_tokens: int  # completion budget left after the prompt
    dropped_turns: int = 0
    truncated: bool = False  # the newest turn lost its beginning
    dropped_system: bool = False
    stable: int = 0  # leading tokens the thread's next prompt will repeat (through the question's text); 0: none


    @property
    def cut(self) -> bool:
        """Something of the conversation was left out to fit (the answer says so)."""
        return bool(self.dropped_turns or self.truncated or self.dropped_system)


class SpecialTokens:
    """Finds the vocabulary's special tokens (control, unknown) written in template text.

    llama.cpp tokenizes a prompt by first cutting it at every special token's text (the
    longest first) and then tokenizing each stretch of text between them as a whole.
    """

    def __init__(self, specials: Mapping[str, int]):
        self._ids = dict(specials)
        texts = sorted(self._ids, key=len, reverse=True)
        self._re = re.compile("(" + "|".join(map(re.escape, texts)) + ")") if texts else None

    def split(self, text: str) -> list[str | int]:
        """`text` as plain stretches (str) and special token ids (int), in order."""
        if self._re is None:
            return [text]
        parts = self._re.split(text)  # text, special, text, special, ..., text
        return [self._ids[p] if i % 2 else p for i, p in enumerate(parts) if p]


class PromptBuilder:
    """Formats and tokenizes turns for one model (formatter + tokenizer + BOS).

    The tokens are those llama.cpp gives the rendered prompt (special tokens parsed), with
    one difference: only template text is searched for special tokens. A message that says
    "<end_of_turn>" or "<|im_end|>" stays text, so nobody can forge a turn.
    """

    def __init__(
        self,
        formatter: ChatFormatter,
        tokenize: Tokenize,
        detokenize: Detokenize,
        bos_id: int,
        specials: Mapping[str, int] | None = None,
    ):
        self.formatter = formatter
        self._tokenize = tokenize
        self._detokenize = detokenize
        self._bos_id = bos_id
        self._specials = SpecialTokens(specials or {})

    def encode(self, turns: Sequence[ChatTurn]) -> list[int]:
        """Format then tokenize: template text with special tokens, contents as plain text."""
        return self._encode_formatted(self.formatter.format(turns))[0]

    def _encode_formatted(self, fp: FormattedPrompt) -> tuple[list[int], int]:
        """The tokens, and how many of them the next prompt of the thread repeats for sure: up
        to the end of the last stretch of message text that a special token closes (with
        Gemma's turns, the asker's question; the answer's opening after it is laid out
        differently next time)."""
        ids: list[int] = [self._bos_id] if fp.add_bos and self._bos_id >= 0 else []
        run: list[str] = []  # text since the last special token: tokenized as one stretch
        run_holds_text = False  # the stretch holds message text, not only template text
        stable = 0

        def flush(at_special: bool) -> None:
            nonlocal run_holds_text, stable
            if run:
                ids.extend(self._tokenize("".join(run)))
                run.clear()
            # A stretch of message text that a special token ends is tokenized the same in
            # the next prompt, which repeats the text and the token after it.
            if run_holds_text and at_special:
                stable = len(ids)
            run_holds_text = False

        for text, is_template in fp.segments:
            for part in self._specials.split(text) if is_template else (text,):
                if isinstance(part, int):
                    flush(True)
                    ids.append(part)
                else:
                    run.append(part)
                    run_holds_text = run_holds_text or not is_template
        flush(False)
        return ids, stable

    def _encode_stable(self, turns: Sequence[ChatTurn]) -> tuple[list[int], int]:
        return self._encode_formatted(self.formatter.format(turns))

    def build(
        self, turns: Sequence[ChatTurn], n_ctx_seq: int, max_tokens: int, prompt_budget: int | None = None
    ) -> BuiltPrompt:
        """Tokens for `turns` such that `len(tokens) <= prompt_budget` and
        `len(tokens) + max_tokens <= n_ctx_seq`.

        The prompt is always given at least a quarter of the context (or all it needs, if
        less; never more than `prompt_budget`): a huge `max_tokens` shrinks the completion
        budget instead of the question.
        """
        max_tokens = max(1, min(max_tokens, n_ctx_seq - 1))
        limit = n_ctx_seq - 1 if prompt_budget is None else max(1, min(prompt_budget, n_ctx_seq - 1))
        system, rest = split_system(merge_turns(turns))
        sys_turns = [ChatTurn("system", system)] if system else []

        tokens, stable = self._encode_stable(sys_turns + rest)
        if len(tokens) <= limit and len(tokens) + max_tokens <= n_ctx_seq:
            return BuiltPrompt(tokens, max_tokens, stable=stable)
        budget = min(limit, max(n_ctx_seq - max_tokens, min(len(tokens), n_ctx_seq // 4)))

        def fits(k: int) -> list[int] | None:
            toks = self.encode(sys_turns + _from_user(rest[k:]))
            return toks if len(toks) <= budget else None

        # Smallest number of dropped turns that fits (longer history never gets shorter).
        dropped, found = 0, None
        n = len(rest)
        if n > 1 and (toks := fits(n - 1)) is not None:
            lo, hi, found = 1, n - 1, toks
            while lo < hi:
                mid = (lo + hi) // 2
                toks = fits(mid)
                if toks is not None:
                    hi, found = mid, toks
                else:
                    lo = mid + 1
            # In a block: from the first cut point that fits (it keeps fitting for a while).
            cut = first_cut([t.content if t.role == "user" else None for t in rest[: n - 1]], hi)
            kept = _from_user(rest[cut:])
            found, stable = self._encode_stable(sys_turns + kept)
            dropped = n - len(kept)
        if found is not None:
            return BuiltPrompt(found, min(max_tokens, n_ctx_seq - len(found)), dropped_turns=dropped, stable=stable)

        # Only the newest turn is left and it is still too long: cut its beginning.
        last = rest[-1] if rest else ChatTurn("user", "")
        dropped = max(0, len(rest) - 1)
        # A system turn too long to leave the question its room (a long room system prompt,
        # a shared context's block of messages) keeps its start and end, in at least half.
        content_ids = self._tokenize(last.content)
        shortened = self._shorten_system(sys_turns, last.role, max(budget // 2, budget - len(content_ids)))
        system_cut = shortened != sys_turns
        sys_turns = shortened
        for with_system in (True, False):
            head = sys_turns if with_system else []
            overhead = len(self.encode(head + [ChatTurn(last.role, "")]))
            room = budget - overhead
            if room < 1:
                continue
            keep = min(room, len(content_ids))
            while keep > 0:
                text = self._detokenize(content_ids[-keep:])
                toks = self.encode(head + [ChatTurn(last.role, text)])
                if len(toks) <= budget:
                    return BuiltPrompt(
                        toks,
                        min(max_tokens, n_ctx_seq - len(toks)),
                        dropped_turns=dropped,
                        truncated=keep < len(content_ids) or (with_system and system_cut),
                        dropped_system=not with_system and bool(sys_turns),
                    )
                keep -= max(1, len(toks) - budget)
        # Pathological (a context smaller than the template itself): just the opening.
        toks = self.encode([ChatTurn(last.role, "")])[-budget:] if budget > 0 else []
        return BuiltPrompt(toks, max(1, n_ctx_seq - len(toks)), dropped, True, bool(sys_turns))

    def _shorten_system(self, sys_turns: list[ChatTurn], role: str, room: int) -> list[ChatTurn]:
        """The system turn within `room` tokens (with the format around it): its start and
        its end, the middle left out. A system prompt that carries a room's messages (shared
        context) keeps the prompt itself and the newest messages."""
        if not sys_turns or len(self.encode(sys_turns + [ChatTurn(role, "")])) <= room:
            return sys_turns
        ids = self._tokenize(sys_turns[0].content)
        keep = max(0, room - len(self.encode([ChatTurn("system", _GAP), ChatTurn(role, "")])))
        while True:
            head, tail = keep - keep // 2, keep // 2
            text = self._detokenize(ids[:head]) + _GAP + (self._detokenize(ids[-tail:]) if tail else "")
            shortened = [ChatTurn("system", text)]
            over = len(self.encode(shortened + [ChatTurn(role, "")])) - room
            if over <= 0 or keep <= 0:
                return shortened
            keep = max(0, keep - over)


_GAP = "\n[…]\n"  # where the middle of a system prompt too long for the budget was left out


def _from_user(turns: Sequence[ChatTurn]) -> list[ChatTurn]:
    """A trimmed conversation starts at a user turn (templates expect user first)."""
    i = 0
    while i < len(turns) - 1 and turns[i].role == "assistant":
        i += 1
    return list(turns[i:])
