"""Building a tokenizer (`train_tokenizer`) and its file, tokenizer.json: to and from
JSON with every field validated, saved atomically, read with a size bound."""

import base64
import binascii
import json
from pathlib import Path
from typing import Any

from minigpt.errors import ConfigError, TokenizerError
from minigpt.fileio import PathLike, load_json_object, write_atomic
from minigpt.schema import is_int
from minigpt.tokenizer.bpe import MAX_VOCAB_SIZE, N_BYTES, train_bpe
from minigpt.tokenizer.encodings import (
    FORMAT_VERSION,
    GPT2_PATTERN_STDLIB,
    BPETokenizer,
    CharTokenizer,
    TiktokenTokenizer,
    Tokenizer,
)
from minigpt.tokenizer.hf_bpe import HFBPETokenizer

MAX_TOKENIZER_FILE_BYTES = 64 * 1024 * 1024


def train_tokenizer(kind: str, text: str, vocab_size: int | None = None) -> Tokenizer:
    """Build a tokenizer: "char", "bpe" (needs vocab_size) or a tiktoken encoding name.

    `vocab_size` is the number of ids including `<|endoftext|>`; BPE training may
    stop short of it when no pair of tokens repeats. For char and tiktoken the
    vocabulary is fixed, so a vocab_size other than the actual one is an error.
    """
    if not isinstance(kind, str):
        raise ConfigError(f"tokenizer kind must be a string, got {kind!r}")
    if vocab_size is not None and (type(vocab_size) is not int or vocab_size < 1):
        raise ConfigError(f"vocab_size must be a positive integer, got {vocab_size!r}")
    if kind == "bpe":
        if vocab_size is None or not N_BYTES + 1 < vocab_size <= MAX_VOCAB_SIZE:
            raise ConfigError(
                f"a bpe tokenizer needs vocab_size between {N_BYTES + 2} (256 bytes, "
                f"<|endoftext|> and one merge) and {MAX_VOCAB_SIZE}, got {vocab_size}"
            )
        if not text:
            raise TokenizerError("cannot train a bpe tokenizer on empty text")
        return BPETokenizer(train_bpe(text, vocab_size - 1, GPT2_PATTERN_STDLIB))
    tok: Tokenizer = CharTokenizer.from_text(text) if kind == "char" else TiktokenTokenizer(kind)
    if vocab_size is not None and vocab_size != tok.vocab_size:
        raise ConfigError(
            f"vocab_size={vocab_size} does not apply to the {kind!r} tokenizer, whose "
            f"vocabulary has {tok.vocab_size} tokens; leave vocab_size unset"
        )
    return tok


def _field(d: dict[str, Any], key: str, typ: type) -> Any:
    """d[key] checked to be of type `typ` (bool is not an int here)."""
    if key not in d:
        raise TokenizerError(f"missing field {key!r}")
    value = d[key]
    if not (is_int(value) if typ is int else isinstance(value, typ)):
        raise TokenizerError(f"field {key!r} must be a {typ.__name__}, got {value!r:.80}")
    return value


def _decode_b64(s: object, rank: int) -> bytes:
    if not isinstance(s, str):
        raise TokenizerError(f"BPE rank {rank} must be a base64 string, got {s!r:.80}")
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError) as e:
        raise TokenizerError(f"BPE rank {rank} is not valid base64 ({s!r:.80}): {e}") from e


def tokenizer_from_json(d: dict[str, Any]) -> Tokenizer:
    """Rebuild a tokenizer from `to_json()` output, validating every field."""
    if not isinstance(d, dict):
        raise TokenizerError(f"a tokenizer must be a JSON object, got {type(d).__name__}")
    kind = _field(d, "kind", str)
    version = _field(d, "version", int)
    if version != FORMAT_VERSION:
        raise TokenizerError(f"unsupported tokenizer format version {version!r:.80}")
    vocab_size = _field(d, "vocab_size", int)
    if kind == "char":
        tok: Tokenizer = CharTokenizer(_field(d, "chars", list))
    elif kind == "bpe":
        b64 = _field(d, "ranks", list)
        tokens = [_decode_b64(s, i) for i, s in enumerate(b64)]
        ranks = {t: i for i, t in enumerate(tokens)}
        if len(ranks) != len(tokens):
            raise TokenizerError("BPE ranks contain duplicate tokens")
        special = _field(d, "special_tokens", dict)
        tok = BPETokenizer(ranks, _field(d, "pattern", str), special)
    elif kind == "tiktoken":
        tok = TiktokenTokenizer(_field(d, "name", str))
    elif kind == HFBPETokenizer.kind:
        tok = _hf_bpe_from_json(d)
    else:
        raise TokenizerError(
            f"unknown tokenizer kind {kind!r:.80}: expected char, bpe, hf-bpe or tiktoken"
        )
    if vocab_size != tok.vocab_size:
        raise TokenizerError(
            f"vocab_size {vocab_size!r:.80} does not match the {tok.vocab_size} tokens it holds"
        )
    return tok


def _hf_bpe_from_json(d: dict[str, Any]) -> HFBPETokenizer:
    """An imported Hugging Face BPE: ranks in order with their ids, decode-only tokens."""
    tokens = [_decode_b64(s, i) for i, s in enumerate(_field(d, "ranks", list))]
    ids = _field(d, "ids", list)
    if len(ids) != len(tokens):
        raise TokenizerError(f"hf-bpe has {len(tokens)} ranks but {len(ids)} ids")
    decode_only = []
    for entry in _field(d, "decode_only", list):
        if not (isinstance(entry, list) and len(entry) == 2):
            raise TokenizerError(
                f"hf-bpe decode_only entries must be [id, base64], got {entry!r:.80}"
            )
        decode_only.append((_decode_b64(entry[1], entry[0]), entry[0]))
    eot = d.get("eot")
    if eot is not None and not isinstance(eot, str):
        raise TokenizerError(f"field 'eot' must be a str or null, got {eot!r:.80}")
    special = _field(d, "special_tokens", dict)
    return HFBPETokenizer(
        list(zip(tokens, ids, strict=True)), _field(d, "pattern", str), special, eot, decode_only
    )


def save_tokenizer(tok: Tokenizer, path: PathLike) -> None:
    """Write `tok` as JSON to `path` atomically (temp file, fsync, rename)."""
    path = Path(path)
    data = json.dumps(tok.to_json(), indent=1).encode("ascii") + b"\n"
    try:
        write_atomic(path, data)
    except OSError as e:
        raise TokenizerError(f"cannot write tokenizer file {path}: {e}") from e


def load_tokenizer(path: PathLike, expected_vocab_size: int | None = None) -> Tokenizer:
    """Read a tokenizer.json; `expected_vocab_size` is the model's (it may be padded larger)."""
    path = Path(path)
    spec = load_json_object(path, MAX_TOKENIZER_FILE_BYTES, TokenizerError)
    try:
        tok = tokenizer_from_json(spec)
    except (TokenizerError, ValueError) as e:  # ValueError: tiktoken refusing a pattern
        raise TokenizerError(f"tokenizer file {path}: {e}") from e
    if expected_vocab_size is not None and expected_vocab_size < tok.vocab_size:
        raise TokenizerError(
            f"tokenizer file {path} has {tok.vocab_size} tokens but the model only "
            f"{expected_vocab_size}: the tokenizer and the model don't match"
        )
    return tok
