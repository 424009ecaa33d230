"""`HFBPETokenizer`: a byte-level BPE whose token ids are not its merge ranks.

tiktoken merges a pre-token's bytes by rank and returns the ranks as the ids, so
minigpt's own `BPETokenizer` has id == rank, with the special tokens right after.
A tokenizer imported from Hugging Face (`minigpt.tokenizer.hf`) keeps its model's ids
instead (the rows of the embedding matrix): the special tokens may come first
(`<|endoftext|>` = 0), ids may follow another order than the merges, and some ids
may hold tokens that encoding never produces. This kind holds:

- `ranked`: the tokens tiktoken merges with, in rank order, each with its id;
- `decode_only`: tokens that only decode (encoding never produces them);
- `special_tokens`: name -> id; they stand for no text and are never encoded;
- `eot`: the name of the model's end-of-text token, or None.

When the ids of the multi-byte ranked tokens already rise with their rank (the usual
case), tiktoken is given the ids themselves as ranks (only the order of the ranks of
multi-byte tokens matters to merging) and returns them directly; otherwise it is
given the rank positions and its output is mapped to ids.
"""

import base64
import operator
from collections.abc import Sequence
from typing import Any

import tiktoken

from minigpt.errors import TokenizerError
from minigpt.tokenizer.bpe import MAX_VOCAB_SIZE, N_BYTES
from minigpt.tokenizer.encodings import (
    FORMAT_VERSION,
    PATTERN_PROBES,
    Tokenizer,
    check_pattern,
    encode_ordinary,
)

# Texts a pattern must split with nothing left over: tiktoken drops text its pattern
# does not match, where Hugging Face keeps it as a piece of its own.
# Bytes no UTF-8 text holds: a vocabulary may lack them at no cost.
NEVER_IN_UTF8 = bytes([0xC0, 0xC1, *range(0xF5, 0x100)])
COVERAGE_PROBES = (
    *PATTERN_PROBES,
    "It's 12:30\t\u00a0and\r\n  x = f(y_1) // 3.14\n\n\n  \u3000日本語、カタカナ。ﾊﾝ\u200b",
    "é e\u0301 ½ ß ẞ ǅ Ⅻ ① ٣ \x1c\x1d\x1e\x1f \x85 \u2028 \u2029 \ufeff 🇰🇷 👍🏽 👨‍👩‍👧 \x00",
)


class HFBPETokenizer(Tokenizer):
    """Byte-level BPE with its own ids, run by tiktoken (see the module docstring)."""

    kind = "hf-bpe"

    def __init__(
        self,
        ranked: Sequence[tuple[bytes, int]],
        pattern: str,
        special_tokens: dict[str, int],
        eot: str | None = None,
        decode_only: Sequence[tuple[bytes, int]] = (),
    ) -> None:
        ranked, decode_only = list(ranked), list(decode_only)
        if not 1 <= len(ranked) <= MAX_VOCAB_SIZE:
            raise TokenizerError(f"hf-bpe ranks must hold 1..{MAX_VOCAB_SIZE} tokens")
        if not isinstance(special_tokens, dict):
            raise TokenizerError("hf-bpe special_tokens must be a JSON object of name -> id")
        table: dict[int, bytes] = {}
        for what, entries in (("ranked", ranked), ("decode-only", decode_only)):
            for token, id in entries:
                if not isinstance(token, bytes) or not token:
                    raise TokenizerError(
                        f"hf-bpe {what} token {token!r:.80} is not non-empty bytes"
                    )
                _claim(table, id, token)
        if len(set(table.values())) != len(table):
            raise TokenizerError("hf-bpe tokens must be distinct byte strings")
        singles = {t[0] for t, _ in ranked if len(t) == 1}
        # Bytes without a token: Hugging Face drops them from the text, which tiktoken
        # cannot do, so a text holding one is refused (bytes UTF-8 never uses need nothing).
        self._absent = bytes(b for b in range(N_BYTES) if b not in singles)
        self._check_text = bool(self._absent.translate(None, NEVER_IN_UTF8))
        for name, id in special_tokens.items():
            if not isinstance(name, str) or not name:
                raise TokenizerError(f"bad hf-bpe special token name {name!r:.80}")
            _claim(table, id, name.encode("utf-8", "surrogatepass"))
        if eot is not None and eot not in special_tokens:
            raise TokenizerError(f"hf-bpe eot {eot!r:.80} is not one of its special tokens")
        check_pattern(pattern)
        self._ranked, self._decode_only = ranked, decode_only
        self._pattern, self._special, self._eot = pattern, dict(special_tokens), eot
        self._table: list[bytes | None] = [None] * (max(table) + 1)
        for id, token in table.items():
            self._table[id] = token
        self._enc, self._rank_ids = _encoding(ranked, pattern, len(self._table))
        for probe in COVERAGE_PROBES:  # refused now, not mid-chat: a pattern that fails
            if _utf8(probe).translate(None, self._absent) != _utf8(probe):
                continue  # a text this vocabulary refuses anyway
            if self.decode(self.encode(probe)) != probe:  # ... or that drops text
                raise TokenizerError(
                    f"the pre-tokenization pattern {pattern!r:.200} does not match all of "
                    f"the text {probe!r:.80}; tiktoken would drop the rest"
                )

    @property
    def vocab_size(self) -> int:
        return len(self._table)

    @property
    def eot_id(self) -> int | None:
        return None if self._eot is None else self._special[self._eot]

    def special_id(self, name: str) -> int | None:
        return self._special.get(name)

    @property
    def special_ids(self) -> frozenset[int]:
        return frozenset(self._special.values())

    def encode(self, text: str) -> list[int]:
        if self._check_text:
            self._refuse_absent_bytes(text)
        ranks = encode_ordinary(self._enc, text)
        if self._rank_ids is None:
            return ranks
        ids = self._rank_ids
        return [ids[r] for r in ranks]

    def _refuse_absent_bytes(self, text: str) -> None:
        data = _utf8(text)
        if len(data.translate(None, self._absent)) == len(data):
            return
        at = next(
            i for i, c in enumerate(text) if _utf8(c).translate(None, self._absent) != _utf8(c)
        )
        char = text[at]
        missing = ", ".join(f"0x{b:02x}" for b in _utf8(char) if b in self._absent)
        raise TokenizerError(
            f"the text holds {char!r} (U+{ord(char):04X}, at position {at}), whose UTF-8 byte(s) "
            f"{missing} this tokenizer's vocabulary lacks: Hugging Face would silently drop "
            "them, which minigpt does not imitate; remove that character"
        )

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        table, n = self._table, len(self._table)
        try:
            index = [operator.index(i) for i in ids]
        except TypeError as e:
            raise TokenizerError(f"token ids must be integers: {e}") from e
        parts = [table[i] if 0 <= i < n else None for i in index]  # no wrapping negatives
        if None in parts:
            i = index[parts.index(None)]
            why = f"out of range 0..{n - 1}" if not 0 <= i < n else "not used by this tokenizer"
            raise TokenizerError(f"token id {i} is {why}")
        return b"".join(parts)  # type: ignore[arg-type]

    def token_bytes(self, id: int) -> bytes:
        return self.decode_bytes([id])

    def token_byte_lengths(self) -> list[int]:
        lengths = [0] * len(self._table)  # special tokens and unused ids count 0
        for token, id in self._ranked + self._decode_only:
            lengths[id] = len(token)
        return lengths

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": FORMAT_VERSION,
            "vocab_size": self.vocab_size,
            "pattern": self._pattern,
            "special_tokens": dict(self._special),
            "eot": self._eot,
            "ranks": [_b64(t) for t, _ in self._ranked],
            "ids": [id for _, id in self._ranked],
            "decode_only": [[id, _b64(t)] for t, id in self._decode_only],
        }


def _utf8(text: str) -> bytes:
    """The bytes tiktoken encodes: UTF-8, a lone surrogate read as U+FFFD (as tiktoken does)."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        return text.encode("utf-16", "surrogatepass").decode("utf-16", "replace").encode("utf-8")


def _claim(table: dict[int, bytes], id: object, token: bytes) -> None:
    """Give `id` to `token`, refusing a bad id or one already taken."""
    if type(id) is not int or not 0 <= id < MAX_VOCAB_SIZE:
        raise TokenizerError(
            f"hf-bpe token id {id!r:.80} is not an integer in 0..{MAX_VOCAB_SIZE - 1}"
        )
    if id in table:
        raise TokenizerError(f"hf-bpe token id {id} is given to two tokens")
    table[id] = token


def _b64(token: bytes) -> str:
    return base64.b64encode(token).decode("ascii")


def _encoding(
    ranked: list[tuple[bytes, int]], pattern: str, n_ids: int
) -> tuple[tiktoken.Encoding, list[int] | None]:
    """The tiktoken encoding, and the id of each rank it returns (None: ranks are ids)."""
    merged_ids = [id for token, id in ranked if len(token) > 1]
    direct = all(a < b for a, b in zip(merged_ids, merged_ids[1:], strict=False))
    if direct:
        mergeable = dict(ranked)
    else:
        mergeable = {token: rank for rank, (token, _) in enumerate(ranked)}
    try:
        encoding = tiktoken.Encoding(
            name=f"minigpt-hf-bpe-{n_ids}",
            pat_str=pattern,
            mergeable_ranks=mergeable,
            special_tokens={},
        )
    except ValueError as e:  # e.g. a pattern the Rust regex engine rejects
        raise TokenizerError(f"tiktoken rejected this BPE tokenizer: {e}") from e
    return encoding, None if direct else [id for _, id in ranked]
