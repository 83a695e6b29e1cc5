"""Building the token prompt of a request, trimmed to its budget.

A room's history grows without bound; the model's context does not, and it is shared by
every running answer. Each prompt has a budget of tokens (`prompt_budget`, by default its
share of the KV cache: n_ctx / parallel), and `prompt + max_tokens` must fit the sequence's
context. We keep the system prompt and the newest turns: the oldest non-system turns are
dropped until both hold, and if the newest turn alone is still too long its *beginning*
is cut (the end of a message is usually the question).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

from .chat_format import ChatFormatter, FormattedPrompt, merge_turns, split_system
from .types import ChatTurn

Tokenize = Callable[[str], list[int]]  # plain text -> ids (no special tokens parsed)
Detokenize = Callable[[list[int]], str]


@dataclass(frozen=True)
class BuiltPrompt:
    """The tokens to evaluate, and how much of the conversation had to go."""

    tokens: list[int]
    max_tokens: int  # completion budget left after the prompt
    dropped_turns: int = 0
    truncated: bool = False  # the newest turn lost its beginning
    dropped_system: bool = False

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
        return self._encode_formatted(self.formatter.format(turns))

    def _encode_formatted(self, fp: FormattedPrompt) -> list[int]:
        ids: list[int] = [self._bos_id] if fp.add_bos and self._bos_id >= 0 else []
        run: list[str] = []  # text since the last special token: tokenized as one stretch

        def flush() -> None:
            if run:
                ids.extend(self._tokenize("".join(run)))
                run.clear()

        for text, is_template in fp.segments:
            for part in self._specials.split(text) if is_template else (text,):
                if isinstance(part, int):
                    flush()
                    ids.append(part)
                else:
                    run.append(part)
        flush()
        return ids

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

        tokens = self.encode(sys_turns + rest)
        if len(tokens) <= limit and len(tokens) + max_tokens <= n_ctx_seq:
            return BuiltPrompt(tokens, max_tokens)
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
            dropped = n - len(_from_user(rest[hi:]))
        if found is not None:
            return BuiltPrompt(found, min(max_tokens, n_ctx_seq - len(found)), dropped_turns=dropped)

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
