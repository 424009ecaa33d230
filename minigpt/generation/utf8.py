"""Which tokens keep a row's bytes valid UTF-8: a UTF-8 decoder as a small automaton,
and per tokenizer its tables over the vocabulary.

A byte-level tokenizer (GPT-2's, minigpt's BPE) has tokens that hold part of a
character, or bytes that can never be UTF-8 (C0, C1, F5-FF). A model drawing freely
can write byte sequences that are not text, which would print as U+FFFD. The automaton
reads bytes one at a time; its state says what may come next:

    COMPLETE      between characters: ASCII, or a lead byte C2-F4
    NEED1..NEED3  1, 2 or 3 continuation bytes (80-BF) still to come
    AFTER_E0      E0 takes A0-BF next (no overlong 3-byte forms), then one more
    AFTER_ED      ED takes 80-9F next (no surrogates D800-DFFF), then one more
    AFTER_F0      F0 takes 90-BF next (no overlong 4-byte forms), then two more
    AFTER_F4      F4 takes 80-8F next (nothing above U+10FFFF), then two more
    AFTER_EF      EF: 80-BE then one more, or BF ...
    AFTER_EF_BF   ... then anything but BD: EF BF BD is U+FFFD itself

U+FFFD is valid UTF-8, but it is what a broken character prints as, and GPT-2's
vocabulary holds it (its training text did): the model never writes it, so a sample
shows U+FFFD only where the user's own text had it. A byte the state does not accept
is a dead end. `build_tables` runs every token's
bytes from every state once: `blocked` (S, V) says which tokens would reach a dead
end, `next_state` (S, V) where the others lead. A token of ASCII bytes only is allowed
in COMPLETE alone and leads back to it, so only the non-ASCII tokens are simulated
(all of them at once, byte position by byte position). Special tokens add no bytes:
they are allowed in every state and leave it as it is (what they do to a sample is
`minigpt.generation.generate`'s business). While generating, a row's mask is one
lookup, `blocked[state]`, and its next state one more, `next_state[state, token]`.

`Utf8Tables` holds the tables on a device; `Utf8Cache` builds them on first use and
keeps them, for whoever generates repeatedly with one tokenizer (a chat session, the
samples shown while training).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from minigpt.errors import TokenizerError
from minigpt.tokenizer.encodings import Tokenizer

STATES = 10
COMPLETE, NEED1, NEED2, NEED3, AFTER_E0, AFTER_ED, AFTER_F0, AFTER_F4, AFTER_EF, AFTER_EF_BF = (
    range(STATES)
)
DEAD = STATES  # one more row in the byte table: a dead end stays dead


def _byte_table() -> np.ndarray:
    """(S + 1, 256) int64: the state after each byte from each state (DEAD: invalid)."""
    table = np.full((STATES + 1, 256), DEAD, dtype=np.int64)
    table[COMPLETE, 0x00:0x80] = COMPLETE
    table[COMPLETE, 0xC2:0xE0] = NEED1
    table[COMPLETE, 0xE0] = AFTER_E0
    table[COMPLETE, 0xE1:0xF0] = NEED2
    table[COMPLETE, 0xED] = AFTER_ED
    table[COMPLETE, 0xEF] = AFTER_EF
    table[COMPLETE, 0xF0] = AFTER_F0
    table[COMPLETE, 0xF1:0xF4] = NEED3
    table[COMPLETE, 0xF4] = AFTER_F4
    table[NEED1, 0x80:0xC0] = COMPLETE
    table[NEED2, 0x80:0xC0] = NEED1
    table[NEED3, 0x80:0xC0] = NEED2
    table[AFTER_E0, 0xA0:0xC0] = NEED1
    table[AFTER_ED, 0x80:0xA0] = NEED1
    table[AFTER_F0, 0x90:0xC0] = NEED2
    table[AFTER_F4, 0x80:0x90] = NEED2
    table[AFTER_EF, 0x80:0xBF] = NEED1
    table[AFTER_EF, 0xBF] = AFTER_EF_BF
    table[AFTER_EF_BF, 0x80:0xC0] = COMPLETE
    table[AFTER_EF_BF, 0xBD] = DEAD  # U+FFFD
    return table


BYTE_TABLE = _byte_table()  # a constant, like a lookup table in a decoder


def run_bytes(data: bytes, state: int = COMPLETE) -> int:
    """The state after reading `data` from `state`; DEAD once a byte was invalid."""
    for byte in data:
        state = int(BYTE_TABLE[state, byte])
    return state


@dataclass(frozen=True)
class Utf8Tables:
    """A tokenizer's automaton tables on one device (see the module doc)."""

    blocked: torch.Tensor  # (S, V) bool: the token would make the bytes invalid
    next_state: torch.Tensor  # (S, V) int64: where an allowed token leads (COMPLETE if blocked)

    def rows(self, n: int) -> Utf8Rows:
        """The states of n rows starting between characters (after a prompt: text)."""
        return Utf8Rows(
            self, torch.full((n,), COMPLETE, dtype=torch.long, device=self.blocked.device)
        )


@dataclass
class Utf8Rows:
    """Where each row of a generation is in its UTF-8."""

    tables: Utf8Tables
    states: torch.Tensor  # (B,) int64

    def blocked(self) -> torch.Tensor:
        """(B, V): the tokens that cannot come next in each row (one indexed lookup)."""
        return self.tables.blocked[self.states]

    def advance(self, tokens: torch.Tensor) -> None:
        """Each row's state after its token (B,) (one gather)."""
        self.states = self.tables.next_state[self.states, tokens]


def build_tables(
    tokenizer: Tokenizer, width: int, device: torch.device | str = "cpu"
) -> Utf8Tables | None:
    """The tables for `tokenizer` over `width` ids (the model's vocabulary; ids past the
    tokenizer's are blocked), or None when no token can break a character (every token
    is whole characters, as in a char tokenizer): then nothing needs masking."""
    special = tokenizer.special_ids
    pieces: list[bytes | None] = []
    for i in range(min(width, tokenizer.vocab_size)):
        try:
            pieces.append(b"" if i in special else tokenizer.token_bytes(i))
        except TokenizerError:  # an unused id inside the encoding's range
            pieces.append(None)
    blocked = np.ones((STATES, width), dtype=bool)
    next_state = np.full((STATES, width), COMPLETE, dtype=np.int64)
    ascii_ids = [i for i, p in enumerate(pieces) if p and p.isascii()]
    blocked[COMPLETE, ascii_ids] = False
    special_ids = [i for i in special if i < width]
    blocked[:, special_ids] = False
    next_state[:, special_ids] = np.arange(STATES)[:, None]
    others = [i for i, p in enumerate(pieces) if p and not p.isascii()]
    if others:
        ends = _run_all([pieces[i] or b"" for i in others])  # (N, S)
        blocked[:, others] = (ends == DEAD).T
        next_state[:, others] = np.where(ends == DEAD, COMPLETE, ends).T
    if not _needs_mask(blocked, next_state, pieces):
        return None
    return Utf8Tables(torch.from_numpy(blocked).to(device), torch.from_numpy(next_state).to(device))


def _run_all(pieces: list[bytes]) -> np.ndarray:
    """(N, S): the state each of N byte strings ends in from each starting state."""
    longest = max(len(p) for p in pieces)
    data = np.zeros((len(pieces), longest), dtype=np.int64)  # (N, L) bytes, 0-padded
    lengths = np.array([len(p) for p in pieces])
    for row, piece in enumerate(pieces):
        data[row, : len(piece)] = np.frombuffer(piece, dtype=np.uint8)
    states = np.broadcast_to(np.arange(STATES), (len(pieces), STATES)).copy()  # (N, S)
    for position in range(longest):
        moved = BYTE_TABLE[states, data[:, position : position + 1]]  # (N, S)
        states = np.where((position < lengths)[:, None], moved, states)
    return states


def _needs_mask(blocked: np.ndarray, next_state: np.ndarray, pieces: list[bytes | None]) -> bool:
    """Whether some token the tokenizer has is blocked between characters, or leaves a
    character unfinished; if none is, every row stays COMPLETE and nothing is masked."""
    known = [i for i, p in enumerate(pieces) if p is not None]
    return bool(blocked[COMPLETE, known].any() or next_state[COMPLETE, known].any())


class Utf8Cache:
    """A tokenizer's tables, built on first use and kept, per vocabulary width and
    device; owned by whoever generates repeatedly with that tokenizer."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer
        self._built: dict[tuple[int, str], Utf8Tables | None] = {}

    def tables(self, width: int, device: torch.device | str) -> Utf8Tables | None:
        key = (width, str(device))
        if key not in self._built:
            self._built[key] = build_tables(self.tokenizer, width, device)
        return self._built[key]
