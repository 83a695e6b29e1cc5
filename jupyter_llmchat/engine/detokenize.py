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

    __slots__ = ("_decoder", "_stops", "_hidden", "_held", "_unshown", "_max_hold", "stopped")

    def __init__(self, stops: Sequence[str] = (), hidden: Sequence[str] = (), start: str = ""):
        """`start`: the prompt's last text, which the answer continues: a stop string may
        begin in it (the format's "\nuser\n" matches a "user" line the answer opens with),
        and it is never shown."""
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._stops = tuple(s for s in (*stops, *hidden) if s)
        self._hidden = tuple(s for s in hidden if s)
        self._held = start if self._stops else ""
        self._unshown = len(self._held)  # leading characters of `_held` that are the prompt's
        self._max_hold = max((len(s) for s in self._stops), default=0)
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
        cut = -1
        for stop in self._stops:
            i = text.find(stop)
            if i >= 0 and (cut < 0 or i < cut):
                cut = i
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return self._shown(text[:cut])
        hold = 0
        # The longest tail of `text` that is a proper prefix of some stop string.
        for n in range(min(len(text), self._max_hold - 1), 0, -1):
            tail = text[-n:]
            if any(stop.startswith(tail) for stop in self._stops):
                hold = n
                break
        self._held = text[len(text) - hold :] if hold else ""
        return self._shown(text[: len(text) - hold])

    def _shown(self, released: str) -> str:
        """`released` without what is still the prompt's own text (`start`)."""
        if not self._unshown:
            return released
        skip, self._unshown = min(self._unshown, len(released)), max(0, self._unshown - len(released))
        return released[skip:]

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
            self._unshown = 0
        text = held + tail
        self._held = ""
        if self._stops and tail:
            for stop in self._stops:
                i = text.find(stop)
                if i >= 0:
                    self.stopped = True
                    return self._shown(text[:i])
        return self._shown(text)
