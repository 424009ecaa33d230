"""From a stream of token ids to printable text: whole UTF-8 characters, stop strings.

`Utf8Stream` holds back the bytes of a character split across tokens (CJK, emoji),
so nothing prints as a broken character; special tokens (`<|endoftext|>`, role
tokens) stand for no text and add none. `TextStream` adds stop strings on top: text
that might be the start of a stop string is held back until it is known not to be,
so a stop string is never printed, not even its first characters.
"""

from __future__ import annotations

import codecs
from collections.abc import Sequence

from minigpt.tokenizer.encodings import Tokenizer


class Utf8Stream:
    """Turn token ids into text as they arrive, emitting only complete UTF-8 characters.

    A BPE token can end in the middle of a multi-byte character (CJK, emoji); its
    bytes are held back until the character is complete, so output never shows a
    spurious U+FFFD. A special token adds nothing. Bytes that can never form valid
    UTF-8 become U+FFFD (generation never draws them: `minigpt.generation.utf8`).
    """

    def __init__(self, tokenizer: Tokenizer) -> None:
        self._tokenizer = tokenizer
        self._special = tokenizer.special_ids
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, ids: Sequence[int]) -> str:
        """Text completed by these ids (possibly empty)."""
        if self._special:
            ids = [i for i in ids if i not in self._special]
        return self._utf8.decode(self._tokenizer.decode_bytes(ids))

    def flush(self) -> str:
        """The end of the stream: a character still incomplete (generation stopped in
        the middle of it) is dropped, never printed as U+FFFD."""
        self._utf8.reset()  # it holds only the valid start of a character, if anything
        return ""


class TextStream:
    """Decoded text of one sequence, cut at the first stop string.

    `feed(ids)` returns the text that is safe to print now; once a stop string has
    appeared, `stopped` is True and the text before it is all that was ever returned.
    `text` is everything returned so far (plus `finish()`'s tail).
    """

    def __init__(self, tokenizer: Tokenizer, stop: Sequence[str] = ()) -> None:
        self._utf8 = Utf8Stream(tokenizer)
        self._stop = tuple(stop)
        self._pending = ""  # decoded but not yet returned: it may begin a stop string
        self.text = ""
        self.stopped = False

    def feed(self, ids: Sequence[int]) -> str:
        if self.stopped:
            return ""
        return self._release(self._pending + self._utf8.feed(ids), final=False)

    def finish(self) -> str:
        """The held-back tail at the end of generation (no stop string came)."""
        if self.stopped:
            return ""
        return self._release(self._pending + self._utf8.flush(), final=True)

    def _release(self, pending: str, final: bool) -> str:
        hits = [i for i in (pending.find(s) for s in self._stop) if i >= 0]
        if hits:
            self.stopped = True
            out, self._pending = pending[: min(hits)], ""
        else:
            keep = 0 if final else _stop_prefix_length(pending, self._stop)
            out, self._pending = pending[: len(pending) - keep], pending[len(pending) - keep :]
        self.text += out
        return out


def _stop_prefix_length(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of `text` that is the beginning of a stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best
