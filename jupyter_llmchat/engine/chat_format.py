"""Turning a room's conversation into the model's prompt format.

A formatter returns *segments*: pieces of template text (searched for the vocabulary's
control tokens) alternating with message contents (never searched). Keeping them apart
means a user who types "<end_of_turn>" cannot forge a turn; `prompt.PromptBuilder` then
tokenizes them as llama.cpp tokenizes a rendered prompt.

- GGUF without `tokenizer.chat_template` (the shipped Gemma 3 270M): Gemma's turn format,
  built here. llama-cpp-python would otherwise silently fall back to a wrong format.
- GGUF with a template: rendered by llama-cpp-python's Jinja2ChatFormatter, as llama.cpp
  prompts it (docs/context.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Protocol, Sequence

from .primer import DEFAULT_FEW_SHOT, DEFAULT_SYSTEM_PROMPT  # noqa: F401  (re-exported)
from .types import ChatTurn

Segment = tuple[str, bool]  # (text, is_template_text)
# A base model that sees the system prompt as plain text sometimes writes it out again after
# its answer ("… The model answers briefly and accurately."): the opening words of each of
# its sentences end an answer there. Bounded, because every stop string is checked per token.
ECHO_STOP_WORDS = 6  # the opening words of a sentence that make its stop string
ECHO_MIN_WORDS = 4  # shorter sentences may well be an answer's own words
ECHO_MAX_STOPS = 8


@dataclass(frozen=True)
class FormattedPrompt:
    """What a formatter produces: segments, and whether a BOS token goes first."""

    segments: list[Segment]
    add_bos: bool


class ChatFormatter(Protocol):
    """Anything that can lay out turns for the model (ending with the answer's opening)."""

    kind: str
    extra_stops: tuple[str, ...]  # stop strings implied by the format itself
    source: str  # the template's own text: which control tokens the format uses

    def format(self, turns: Sequence[ChatTurn]) -> FormattedPrompt: ...

    def answer_stops(self, turns: Sequence[ChatTurn]) -> tuple[str, ...]:
        """Stop strings of this conversation's own (the system prompt, where it is plain text)."""
        ...


def echo_stops(system: str | None) -> tuple[str, ...]:
    """The opening words of each sentence of `system` long enough to be unmistakable."""
    stops: list[str] = []
    for sentence in re.split(r"(?<=[.!?])\s+|\n+", system or ""):
        found = re.findall(r"\S+", sentence)
        if len(found) >= ECHO_MIN_WORDS:
            stops.append(" ".join(found[:ECHO_STOP_WORDS]).rstrip(".!?,;:"))
    return tuple(dict.fromkeys(stops))[:ECHO_MAX_STOPS]


def merge_turns(turns: Sequence[ChatTurn]) -> list[ChatTurn]:
    """Strip contents and merge consecutive turns of one role.

    A room has many users: three people talking in a row are one "user" turn to the model,
    and chat templates usually insist on alternating roles.
    """
    merged: list[ChatTurn] = []
    for turn in turns:
        content = turn.content.strip()
        if merged and merged[-1].role == turn.role:
            prev = merged[-1]
            joined = f"{prev.content}\n{content}" if prev.content and content else prev.content or content
            merged[-1] = ChatTurn(prev.role, joined)
        else:
            merged.append(ChatTurn(turn.role, content))
    return merged


def split_system(turns: Sequence[ChatTurn]) -> tuple[str | None, list[ChatTurn]]:
    """Separate leading system turns (the system prompt) from the conversation."""
    system: list[str] = []
    i = 0
    while i < len(turns) and turns[i].role == "system":
        if turns[i].content:
            system.append(turns[i].content)
        i += 1
    return ("\n\n".join(system) if system else None), list(turns[i:])


def fold_system(system: str | None, turns: Sequence[ChatTurn]) -> list[ChatTurn]:
    """Put the system prompt at the top of the first user turn (Gemma's own convention).

    Any later system turn is shown to the model as a user turn.
    """
    out = [ChatTurn("user" if t.role == "system" else t.role, t.content) for t in turns]
    out = merge_turns(out)
    if system:
        if out and out[0].role == "user":
            out[0] = ChatTurn("user", f"{system}\n\n{out[0].content}" if out[0].content else system)
        else:
            out.insert(0, ChatTurn("user", system))
    return out


def _join_template_text(segments: list[Segment]) -> list[Segment]:
    """Merge adjacent template pieces and drop empty ones (fewer tokenizer calls)."""
    out: list[Segment] = []
    for text, special in segments:
        if not text:
            continue
        if out and special and out[-1][1]:
            out[-1] = (out[-1][0] + text, True)
        else:
            out.append((text, special))
    return out


class GemmaFormatter:
    """Gemma's turn format for GGUFs without a chat template (typically base models).

    `<start_of_turn>user\n{system}\n\nuser\n{q}\nmodel\n{a}\n\n…user\n{question}<end_of_turn>\n<start_of_turn>model\n`:
    the examples and earlier turns are plain "user"/"model" lines inside one user turn (see
    DEFAULT_FEW_SHOT for why). The model ends its answer by writing the next plain "user"
    or "model" line: `extra_stops` end the answer there.
    """

    kind = "gemma"
    extra_stops: tuple[str, ...] = ("\n\nuser\n", "\nuser\n", "\n\nmodel\n", "\nmodel\n")
    source = "<start_of_turn>user\n…<end_of_turn>\n<start_of_turn>model\n"

    def __init__(self, examples: Sequence[tuple[str, str]] = DEFAULT_FEW_SHOT):
        self.examples = tuple((q, a) for q, a in examples)

    def format(self, turns: Sequence[ChatTurn]) -> FormattedPrompt:
        system, rest = split_system(merge_turns(turns))
        lines = [ChatTurn(role, text) for q, a in self.examples for role, text in (("user", q), ("assistant", a))]
        lines += [ChatTurn("user" if t.role == "system" else t.role, t.content) for t in rest]
        lines = merge_turns(lines)
        segments: list[Segment] = [("<start_of_turn>user\n", True)]
        if system:
            segments += [(system, False), ("\n\n", True)]
        for i, turn in enumerate(lines):
            role = "model" if turn.role == "assistant" else "user"
            segments += [(f"{role}\n", True), (turn.content, False)]
            if i < len(lines) - 1:
                segments.append(("\n\n" if turn.role == "assistant" else "\n", True))
        if lines and lines[-1].role == "assistant":
            segments.append(("\n\nuser\n", True))  # a conversation ends with the asker's turn
        segments.append(("<end_of_turn>\n<start_of_turn>model\n", True))
        return FormattedPrompt(_join_template_text(segments), add_bos=True)

    def answer_stops(self, turns: Sequence[ChatTurn]) -> tuple[str, ...]:
        """The system prompt is plain text in this format, and a base model may repeat it."""
        return echo_stops(split_system(merge_turns(turns))[0])


_SENTINEL = "\x00\x01LLMCHAT{}\x01\x00"
_SENTINEL_RE = re.compile("\x00\x01LLMCHAT(\\d+)\x01\x00")
# What a chat template's turn markers look like: <|im_end|>, <|eot_id|>, <end_of_turn>,
# </s>, [INST]. Only such text between two turns becomes a stop string, never plain words.
_MARKER_RE = re.compile(r"<[^<>\s]{1,40}>|\[/?[A-Z_]{2,20}\]")


class JinjaFormatter:
    """A GGUF's `tokenizer.chat_template`, rendered by llama-cpp-python's Jinja2ChatFormatter
    (the template variables llama.cpp and Transformers give it: `messages`, `bos_token`,
    `eos_token`, `add_generation_prompt`, `raise_exception`, `strftime_now`).

    Contents are replaced by sentinels while rendering so template text and user text can
    be tokenized differently; if the template transforms contents so that the sentinels
    are lost or its output differs from the real rendering, the real rendering is used
    whole, as template text (as llama.cpp would).
    """

    kind = "jinja"

    def __init__(self, template: str, bos_text: str = "", eos_text: str = "", add_bos: bool = True):
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        self._jinja = Jinja2ChatFormatter(template, eos_token=eos_text, bos_token=bos_text, add_generation_prompt=True)
        self.source = template
        self.bos_text = bos_text
        self.eos_text = eos_text
        self.add_bos = add_bos
        self.extra_stops = self._turn_markers()

    def answer_stops(self, turns: Sequence[ChatTurn]) -> tuple[str, ...]:
        """None: the template marks the system prompt as such, for a model trained on it."""
        return ()

    def _render(self, turns: Sequence[ChatTurn], sentinels: bool) -> str:
        messages = [
            {"role": t.role, "content": _SENTINEL.format(i) if sentinels else t.content} for i, t in enumerate(turns)
        ]
        return self._jinja(messages=messages).prompt

    def _turn_markers(self) -> tuple[str, ...]:
        """The markers the template writes between an answer and the next question
        (`<|im_end|>`, `<|im_start|>`; `<|eot_id|>`, `<|start_header_id|>`, …).

        A model writing one has ended its turn, whether as the vocabulary's control token
        or spelt out as text (a template whose markers are not tokens of this vocabulary).
        """
        probe = [ChatTurn("user", "q"), ChatTurn("assistant", "a"), ChatTurn("user", "q")]
        try:
            parts = _SENTINEL_RE.split(self._render(probe, sentinels=True))
        except Exception:  # a template that needs a system turn, or is broken: no markers
            return ()
        between = parts[4] if len(parts) == 7 else ""  # after the answer, before the question
        return tuple(dict.fromkeys(_MARKER_RE.findall(between)))

    def format(self, turns: Sequence[ChatTurn]) -> FormattedPrompt:
        system, rest = split_system(merge_turns(turns))
        candidates = [([ChatTurn("system", system)] if system else []) + rest]
        if system:  # templates that reject a system role get it folded into the first turn
            candidates.append(fold_system(system, rest))
        last_error: Exception | None = None
        for cand in candidates:
            try:
                rendered = self._render(cand, sentinels=True)
                real = self._render(cand, sentinels=False)
            except Exception as exc:  # template's raise_exception, or a jinja error
                last_error = exc
                continue
            segments = self._split(rendered, cand)
            if segments is None or "".join(text for text, _ in segments) != real:
                segments = [(real, True)]
            return self._strip_bos(segments)
        raise ValueError(f"chat template failed: {last_error}")

    @staticmethod
    def _split(rendered: str, turns: list[ChatTurn]) -> list[Segment] | None:
        parts = _SENTINEL_RE.split(rendered)
        # parts alternates: text, index, text, index, ..., text
        indices = [int(p) for p in parts[1::2]]
        if indices != list(range(len(turns))):
            return None
        segments: list[Segment] = []
        for i, text in enumerate(parts):
            if i % 2 == 0:
                segments.append((text, True))
            else:
                segments.append((turns[int(text)].content, False))
        return segments

    def _strip_bos(self, segments: list[Segment]) -> FormattedPrompt:
        """Templates often write the BOS text themselves; we add the BOS *token* instead
        (as llama.cpp does: it strips the rendered BOS text and tokenizes with add_bos)."""
        add_bos = self.add_bos
        if self.bos_text and segments and segments[0][1] and segments[0][0].startswith(self.bos_text):
            segments[0] = (segments[0][0][len(self.bos_text) :], True)
            add_bos = True
        return FormattedPrompt(_join_template_text(segments), add_bos=add_bos)


class FallbackFormatter:
    """A template that cannot render this conversation falls back to Gemma's format."""

    def __init__(self, primary: JinjaFormatter, fallback: GemmaFormatter, log=None):
        self.primary = primary
        self.fallback = fallback
        self.kind = primary.kind
        self.extra_stops = primary.extra_stops
        self.answer_stops = primary.answer_stops
        self.source = primary.source + fallback.source
        self._log = log

    def format(self, turns: Sequence[ChatTurn]) -> FormattedPrompt:
        try:
            return self.primary.format(turns)
        except Exception as exc:
            if self._log is not None:
                self._log.warning("chat template failed (%s); using Gemma's turn format", exc)
            return self.fallback.format(turns)


def make_formatter(
    chat_template: str | None,
    bos_text: str = "",
    eos_text: str = "",
    add_bos: bool = True,
    log=None,
    examples: Sequence[tuple[str, str]] = DEFAULT_FEW_SHOT,
) -> ChatFormatter:
    """The template carried by the GGUF when there is one, else Gemma's turn format
    (with `examples`, which only a model without a template needs)."""
    if chat_template:
        try:
            return FallbackFormatter(JinjaFormatter(chat_template, bos_text, eos_text, add_bos), GemmaFormatter(examples), log)
        except Exception as exc:  # template does not even compile
            if log is not None:
                log.warning("cannot compile the model's chat template (%s); using Gemma's turn format", exc)
    return GemmaFormatter(examples)
