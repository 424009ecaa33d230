"""Tokenizers: text <-> token ids, in three kinds behind one `Tokenizer` interface.

- `char`: one token per distinct character of the training text (any Unicode).
- `bpe`: a byte-level BPE vocabulary trained on your text (`minigpt.tokenizer.bpe`), plus
  `<|endoftext|>`; encoding and decoding run in tiktoken.
- a tiktoken encoding name (`gpt2`, `r50k_base`, `cl100k_base`, ...): a pretrained
  vocabulary tiktoken downloads on first use (or reads from TIKTOKEN_CACHE_DIR).

Every tokenizer serialises to a JSON-native dict (`to_json`, saved as tokenizer.json)
and has a small identity (`spec`) stored in checkpoint and dataset metadata: two
tokenizers are interchangeable iff their specs are equal.
(`minigpt.generation.text` turns a stream of ids into printable text.)

A literal "<|endoftext|>" inside user text is encoded as ordinary text, never as the
special token: only the code that joins documents may insert `eot_id`.
"""

import base64
import hashlib
import json
import operator
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import tiktoken

from minigpt.errors import TokenizerError
from minigpt.tokenizer.bpe import MAX_VOCAB_SIZE, tokens_in_rank_order

# GPT-2's pre-tokenization regex, spelled twice. tiktoken's Rust regex engine gets the
# exact form with Unicode classes. Training uses Python's stdlib `re`, which has no
# \p{..}, so there \p{L} becomes [^\W\d_] (word chars minus digits and "_"), \p{N}
# becomes \d, and [^\s\p{L}\p{N}] becomes "neither space nor word char, or _". On
# exotic characters (e.g. "½", combining marks, \x1c-\x1f) the two can split text
# differently; that only changes which merges get learned, never the correctness of
# encode/decode, which always use the exact pattern.
GPT2_PATTERN = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
GPT2_PATTERN_STDLIB = (
    r"""'s|'t|'re|'ve|'m|'ll|'d| ?[^\W\d_]+| ?\d+| ?(?:[^\s\w]|_)+|\s+(?!\S)|\s+"""
)

ENDOFTEXT = "<|endoftext|>"
FORMAT_VERSION = 1
MAX_TOKENIZER_FILE_BYTES = 64 * 1024 * 1024


class Tokenizer(ABC):
    """Text <-> token ids. Subclasses set `kind` and implement the abstract methods."""

    kind: str

    @property
    @abstractmethod
    def vocab_size(self) -> int:
        """Number of token ids: every id is in 0..vocab_size-1."""

    @property
    def eot_id(self) -> int | None:
        """The id of `<|endoftext|>`, or None when this tokenizer has none."""
        return None

    def special_id(self, name: str) -> int | None:
        """The id of the special token `name` (e.g. "<|user_start|>"), or None."""
        return self.eot_id if name == ENDOFTEXT else None

    @property
    def special_ids(self) -> frozenset[int]:
        """The ids of every special token (`<|endoftext|>`, role tokens): they stand
        for no text, and `token_bytes` shows their names."""
        return frozenset() if self.eot_id is None else frozenset({self.eot_id})

    @abstractmethod
    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (a literal "<|endoftext|>" is ordinary text)."""

    @abstractmethod
    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        """The UTF-8 bytes the ids stand for (a BPE id may hold part of a character)."""

    def decode(self, ids: Sequence[int]) -> str:
        """Text of the ids; bytes that are not valid UTF-8 become U+FFFD."""
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    @abstractmethod
    def token_bytes(self, id: int) -> bytes:
        """The bytes of one token, for display (a special token shows its name)."""

    @abstractmethod
    def token_byte_lengths(self) -> list[int]:
        """UTF-8 byte length of every id (special tokens count 0), for bits per byte."""

    @abstractmethod
    def to_json(self) -> dict[str, Any]:
        """The whole tokenizer as JSON-native values; `tokenizer_from_json` inverts it."""

    def spec(self) -> dict[str, Any]:
        """Small identity: kind, vocab_size and the SHA-256 of the canonical JSON."""
        canonical = json.dumps(self.to_json(), sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode("ascii")).hexdigest()
        return {"kind": self.kind, "vocab_size": self.vocab_size, "sha256": digest}


def _id_error(ids: Sequence[int], vocab_size: int, cause: Exception | None) -> TokenizerError:
    """A TokenizerError for ids that cannot be decoded, naming the first bad one."""
    for i in ids:
        try:
            if not 0 <= operator.index(i) < vocab_size:
                return TokenizerError(f"token id {i} is out of range 0..{vocab_size - 1}")
        except TypeError:
            return TokenizerError(f"token ids must be integers, got {i!r}")
    return TokenizerError(f"cannot decode token ids: {cause}")


class CharTokenizer(Tokenizer):
    """One token per character; the vocabulary is the sorted distinct characters."""

    kind = "char"

    def __init__(self, chars: Sequence[str]) -> None:
        chars = list(chars)
        if not chars:
            raise TokenizerError("a char tokenizer needs at least one character")
        if any(not isinstance(c, str) or len(c) != 1 for c in chars):
            raise TokenizerError("char tokenizer entries must be single characters")
        if any(a >= b for a, b in zip(chars, chars[1:], strict=False)):
            raise TokenizerError("char tokenizer characters must be sorted and distinct")
        if len(chars) > MAX_VOCAB_SIZE:
            raise TokenizerError(f"char vocabulary has more than {MAX_VOCAB_SIZE} characters")
        self._chars = chars
        # Code points in id order (sorted), so encoding is a vectorised binary search.
        self._codes = np.array([ord(c) for c in chars], dtype=np.uint32)

    @classmethod
    def from_text(cls, text: str) -> "CharTokenizer":
        """Build the vocabulary from the distinct characters of the training text."""
        if not text:
            raise TokenizerError("cannot build a char tokenizer from empty text")
        return cls(sorted(set(text)))

    @property
    def vocab_size(self) -> int:
        return len(self._chars)

    def encode(self, text: str) -> list[int]:
        codes = np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
        ids = np.searchsorted(self._codes, codes)
        unknown = self._codes[np.minimum(ids, len(self._codes) - 1)] != codes
        if unknown.any():
            raise TokenizerError(self._unknown_message(codes[unknown], int(np.argmax(unknown))))
        return ids.tolist()

    def _unknown_message(self, codes: np.ndarray, first: int) -> str:
        """Name the characters (up to 5) the vocabulary lacks, in order of appearance."""
        distinct = list(dict.fromkeys(int(c) for c in codes))
        named = ", ".join(f"{chr(c)!r} (U+{c:04X})" for c in distinct[:5])
        more = f" and {len(distinct) - 5} more" if len(distinct) > 5 else ""
        these, it = ("characters", "them") if len(distinct) > 1 else ("character", "it")
        return (
            f"{these} {named}{more} (first at position {first}) not in the char tokenizer's "
            f"vocabulary, which was built from the training text ({self.vocab_size} "
            f"characters); remove {it}, or retrain on text that contains {it}"
        )

    def decode(self, ids: Sequence[int]) -> str:
        chars, n = self._chars, len(self._chars)
        try:
            if all(0 <= i < n for i in ids):  # checked first: a negative index would wrap
                return "".join([chars[i] for i in ids])
        except TypeError as e:  # a non-integer id
            raise _id_error(ids, n, e) from e
        raise _id_error(ids, n, None)

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        return self.decode(ids).encode("utf-8", "surrogatepass")

    def token_bytes(self, id: int) -> bytes:
        return self.decode([id]).encode("utf-8", "surrogatepass")

    def token_byte_lengths(self) -> list[int]:
        return [len(c.encode("utf-8", "surrogatepass")) for c in self._chars]

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": FORMAT_VERSION,
            "vocab_size": self.vocab_size,
            "chars": list(self._chars),
        }


def encode_ordinary(encoding: tiktoken.Encoding, text: str) -> list[int]:
    """tiktoken's encode_ordinary, its failures raised as TokenizerErrors."""
    # encode_ordinary: special-token text in the input is plain text, never a special id.
    # (A lone surrogate, which is not valid Unicode text, is encoded as U+FFFD.)
    try:
        return encoding.encode_ordinary(text)
    except BaseException as e:  # the regex engine gave up (e.g. its backtracking limit)
        # ... as an error, or as a Rust panic (pyo3's PanicException, a BaseException)
        if not isinstance(e, Exception) and type(e).__name__ != "PanicException":
            raise  # KeyboardInterrupt and the like
        raise TokenizerError(f"the tokenizer's pattern failed on this text: {e}") from e


class _TiktokenBacked(Tokenizer):
    """Shared encode/decode for tokenizers whose work is done by a tiktoken Encoding."""

    def __init__(self, encoding: tiktoken.Encoding) -> None:
        self._enc = encoding
        has_eot = ENDOFTEXT in encoding.special_tokens_set
        self._eot_id = encoding.encode_single_token(ENDOFTEXT) if has_eot else None
        self._special_ids = frozenset(
            encoding.encode_single_token(name) for name in encoding.special_tokens_set
        )

    @property
    def vocab_size(self) -> int:
        return self._enc.n_vocab

    @property
    def eot_id(self) -> int | None:
        return self._eot_id

    @property
    def special_ids(self) -> frozenset[int]:
        return self._special_ids

    def special_id(self, name: str) -> int | None:
        if name not in self._enc.special_tokens_set:
            return None
        return self._enc.encode_single_token(name)

    def encode(self, text: str) -> list[int]:
        return encode_ordinary(self._enc, text)

    def decode_bytes(self, ids: Sequence[int]) -> bytes:
        try:
            return self._enc.decode_bytes(ids)
        except (KeyError, OverflowError, TypeError, ValueError) as e:
            raise _id_error(ids, self.vocab_size, e) from e

    def token_bytes(self, id: int) -> bytes:
        try:
            return self._enc.decode_single_token_bytes(id)
        except (KeyError, OverflowError, TypeError, ValueError) as e:
            raise _id_error([id], self.vocab_size, e) from e


class BPETokenizer(_TiktokenBacked):
    """Byte-level BPE trained by minigpt: mergeable ranks + `<|endoftext|>`, run by tiktoken."""

    kind = "bpe"

    def __init__(
        self,
        ranks: dict[bytes, int],
        pattern: str = GPT2_PATTERN,
        special_tokens: dict[str, int] | None = None,
    ) -> None:
        self._tokens = tokens_in_rank_order(ranks)
        if special_tokens is None:
            special_tokens = {ENDOFTEXT: len(self._tokens)}
        _check_special_tokens(special_tokens, len(self._tokens))
        check_pattern(pattern)
        self._pattern = pattern
        self._special = dict(special_tokens)
        try:
            encoding = tiktoken.Encoding(
                name=f"minigpt-bpe-{len(self._tokens) + len(self._special)}",
                pat_str=pattern,
                mergeable_ranks={tok: i for i, tok in enumerate(self._tokens)},
                special_tokens=self._special,
            )
        except ValueError as e:  # e.g. a pattern the Rust regex engine rejects
            raise TokenizerError(f"tiktoken rejected this BPE tokenizer: {e}") from e
        super().__init__(encoding)
        for probe in PATTERN_PROBES:  # a pattern that cannot run is refused now, not mid-chat
            self.encode(probe)

    def token_byte_lengths(self) -> list[int]:
        return [len(t) for t in self._tokens] + [0] * len(self._special)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "version": FORMAT_VERSION,
            "vocab_size": self.vocab_size,
            "pattern": self._pattern,
            "special_tokens": dict(self._special),
            "ranks": [base64.b64encode(t).decode("ascii") for t in self._tokens],
        }


# Backreferences: \1..\9, \k<name>, \k'name', \g{..}, (?P=name). No pre-tokenizer needs them,
# and the engine runs them by backtracking.
BACKREFERENCE = re.compile(r"\\[1-9]|\\k[<'{]|\\g\{|\(\?P=")
MAX_PATTERN_CHARS = 4096
# Texts a usable pattern must split within the engine's backtracking limit.
PATTERN_PROBES = ("a" * 5000 + "!", " " * 5000 + "x", "Hello, world! 123 ab\n\n" * 50, "가나다 😀")


def check_pattern(pattern: object) -> None:
    """Refuse a pre-tokenization pattern the engine cannot be trusted to run."""
    if not isinstance(pattern, str) or not pattern:
        raise TokenizerError("BPE pattern must be a non-empty string")
    if len(pattern) > MAX_PATTERN_CHARS:
        raise TokenizerError(f"BPE pattern is longer than {MAX_PATTERN_CHARS} characters")
    found = BACKREFERENCE.search(pattern.replace("\\\\", ""))
    if found is not None:
        raise TokenizerError(
            f"BPE pattern uses a backreference ({found.group()!r}), which minigpt does not "
            "run; use a pattern without one, such as GPT-2's"
        )


def _check_special_tokens(special: dict[str, int], n_ranks: int) -> None:
    """Special tokens must be named by non-empty strings and take the ids after the ranks."""
    if not isinstance(special, dict):
        raise TokenizerError("BPE special_tokens must be a JSON object of name -> id")
    for name, id in special.items():
        if not isinstance(name, str) or not name or type(id) is not int:
            raise TokenizerError(f"bad BPE special token {name!r}: {id!r}")
    if sorted(special.values()) != list(range(n_ranks, n_ranks + len(special))):
        raise TokenizerError(
            f"BPE special token ids must be {n_ranks}..{n_ranks + len(special) - 1} "
            f"(right after the {n_ranks} ranks), got {sorted(special.values())}"
        )


class TiktokenTokenizer(_TiktokenBacked):
    """A named pretrained tiktoken encoding such as `gpt2`."""

    kind = "tiktoken"

    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(_get_tiktoken_encoding(name))

    def token_byte_lengths(self) -> list[int]:
        special = {self._enc.encode_single_token(s) for s in self._enc.special_tokens_set}
        lengths = []
        for i in range(self.vocab_size):
            try:
                lengths.append(0 if i in special else len(self._enc.decode_single_token_bytes(i)))
            except KeyError:  # an unused id in the encoding's id range
                lengths.append(0)
        return lengths

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "version": FORMAT_VERSION} | self.spec()

    def spec(self) -> dict[str, Any]:
        # The vocabulary is tiktoken's published file, pinned by hash inside tiktoken.
        return {"kind": self.kind, "name": self.name, "vocab_size": self.vocab_size}


def _get_tiktoken_encoding(name: str) -> tiktoken.Encoding:
    """tiktoken.get_encoding with its failures turned into TokenizerErrors that say the fix."""
    valid = tiktoken.list_encoding_names()
    if name not in valid:
        raise TokenizerError(
            f"unknown tokenizer {name!r}: use 'char', 'bpe' or a tiktoken encoding name "
            f"({', '.join(valid)})"
        )
    try:
        return tiktoken.get_encoding(name)
    except (OSError, ValueError, ImportError) as e:  # requests' errors are OSErrors
        cache = os.environ.get("TIKTOKEN_CACHE_DIR")
        where = f"TIKTOKEN_CACHE_DIR={cache!r} does not hold it" if cache else "no cache is set"
        raise TokenizerError(
            f"the vocabulary of tiktoken encoding {name!r} could not be downloaded "
            f"({where}; {type(e).__name__}). To work offline, set TIKTOKEN_CACHE_DIR "
            "to a directory holding tiktoken's cached file for it"
        ) from e
