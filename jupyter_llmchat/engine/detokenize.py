"""Streaming token bytes out as text: whole UTF-8 characters only, stop strings withheld.

A token can end in the middle of a multi-byte character (emoji, CJK): the incremental
decoder keeps the partial bytes until the character is complete. A stop string can arrive
split over several tokens: text that could be the beginning of one is held back until it
either completes the stop string (then it is dropped, with everything after it) or
cannot anymore (then it is released).
"""

from __future__ import annotations

import codecs
from typing import Sequence


class TextStream:
    """Per-sequence text state; `push` is called once per generated token."""

    __slots__ = ("_decoder", "_stops", "_hidden", "_later", "_held", "_max_hold", "_said", "stopped")

    def __init__(self, stops: Sequence[str] = (), hidden: Sequence[str] = (), after_text: Sequence[str] = ()):
        """`after_text`: stops that end the answer only once it has said something (an
        echo of the system prompt after an answer is cut; one that *is* the whole answer
        is left, or the answer would be empty)."""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._stops = tuple(s for s in (*stops, *hidden) if s)
        self._hidden = tuple(s for s in hidden if s)
        self._later = tuple(s for s in after_text if s)
        self._held = ""
        self._max_hold = max((len(s) for s in self._stops), default=0)
        self._said = not self._later  # nothing to switch on later
        self.stopped = False

    def push(self, piece: bytes) -> str:
        """Feed one token's bytes; return the text that can be shown now.

        After a stop string is found, `stopped` is True and nothing more is returned.
        """
        if self.stopped:
            return ""
        text = self._decoder.decode(piece)
        if not self._stops:
            return text
        if not text:
            return ""
        return self._scan(self._held + text)

    def _scan(self, text: str) -> str:
        shown = self._scan_stops(text)
        if not self._said and shown.strip():
            self._said = True  # from now on the `after_text` stops apply too
            self._stops += self._later
            self._max_hold = max((len(s) for s in self._stops), default=0)
        return shown

    def _scan_stops(self, text: str) -> str:
        cut = -1
        for stop in self._stops:
            i = text.find(stop)
            if i >= 0 and (cut < 0 or i < cut):
                cut = i
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return text[:cut]
        hold = 0
        # The longest tail of `text` that is a proper prefix of some stop string.
        for n in range(min(len(text), self._max_hold - 1), 0, -1):
            tail = text[-n:]
            if any(stop.startswith(tail) for stop in self._stops):
                hold = n
                break
        self._held = text[len(text) - hold :] if hold else ""
        return text[: len(text) - hold]

    def flush(self) -> str:
        """At the end of generation: release any trailing partial character.

        Held text (the start of a stop string that had not completed) is released, unless
        it could begin one of the `hidden` stops (the prompt format's own markers): an
        answer cut by the token cap in the middle of the format's next "\n\nuser" line must
        not show "\n\nuser".
        """
        if self.stopped:
            return ""
        tail = self._decoder.decode(b"", final=True)
        held = self._held
        if held and any(stop.startswith(held) for stop in self._hidden):
            held = ""
        text = held + tail
        self._held = ""
        if self._stops and tail:
            for stop in self._stops:
                i = text.find(stop)
                if i >= 0:
                    self.stopped = True
                    return text[:i]
        return text
