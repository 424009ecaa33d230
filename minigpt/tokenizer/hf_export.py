"""Any minigpt tokenizer as a Hugging Face `tokenizer.json` that gives the same ids.

- char: a BPE model without merges over the characters (the `tokenizers` BPE model
  splits a word into characters and has no pre-tokenizer to cut it), decoded by Fuse.
- bpe, tiktoken, hf-bpe: byte-level BPE, the pre-tokenization pattern as a Split and
  ByteLevel spelling, the special tokens as added tokens.

tiktoken ranks tokens, Hugging Face ranks pairs (see `hf_ranks` for the whole
argument). Each token tiktoken can build is built by one merge only, the last step of
encoding the token alone (its canonical merge), so the merges list is the canonical
merge of every such token, in rank order. A token no merge builds is produced by
tiktoken only when a whole pre-token is that token; `ignore_merges` makes Hugging Face
do the same. An imported tokenizer with decode-only ids (in the vocabulary, never
produced) needs `ignore_merges` off, so one that has both kinds is refused.
"""

from __future__ import annotations

import base64
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import tiktoken

from minigpt.errors import TokenizerError
from minigpt.tokenizer.encodings import (
    ENDOFTEXT,
    BPETokenizer,
    CharTokenizer,
    TiktokenTokenizer,
    Tokenizer,
)
from minigpt.tokenizer.hf_bpe import HFBPETokenizer
from minigpt.tokenizer.hf_ranks import byte_level_decoder

Merge = tuple[bytes, bytes]


@dataclass(frozen=True)
class ByteBPE:
    """A byte-level BPE as tiktoken runs it: tokens in rank order with their ids."""

    ranked: list[tuple[bytes, int]]
    pattern: str
    special: dict[str, int]
    decode_only: list[tuple[bytes, int]]


def byte_bpe(tok: Tokenizer) -> ByteBPE:
    """The ranks, pattern and special tokens of a tiktoken-backed tokenizer."""
    if isinstance(tok, BPETokenizer | HFBPETokenizer):
        spec = tok.to_json()
        tokens = [base64.b64decode(t) for t in spec["ranks"]]
        ids = spec.get("ids", range(len(tokens)))
        decode_only = [(base64.b64decode(t), id) for id, t in spec.get("decode_only", [])]
        return ByteBPE(list(zip(tokens, ids, strict=True)), spec["pattern"],
                       dict(spec["special_tokens"]), decode_only)  # fmt: skip
    if isinstance(tok, TiktokenTokenizer):
        enc = tiktoken.get_encoding(tok.name)
        ranked = sorted(enc._mergeable_ranks.items(), key=lambda kv: kv[1])
        return ByteBPE(ranked, enc._pat_str, dict(enc._special_tokens), [])
    raise TokenizerError(f"a {tok.kind} tokenizer has no byte-level BPE form")


def canonical_merges(ranked: list[tuple[bytes, int]]) -> tuple[list[Merge], list[bytes]]:
    """The canonical merge of every token a merge builds, in rank order, and the tokens
    of two or more bytes no merge builds."""
    rank = {token: r for r, (token, _) in enumerate(ranked)}
    merges: list[Merge] = []
    unbuilt: list[bytes] = []
    for r, (token, _) in enumerate(ranked):
        if len(token) < 2:
            continue
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            best = min(
                (rank.get(a + b, r), i)
                for i, (a, b) in enumerate(zip(parts, parts[1:], strict=False))
            )
            if best[0] >= r:  # only tokens ranked before this one may be merged
                break
            i = best[1]
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) == 2:
            merges.append((parts[0], parts[1]))
        else:
            unbuilt.append(token)
    return merges, unbuilt


def byte_level_speller() -> Callable[[bytes], str]:
    """How GPT-2's byte-level BPE files spell a token: one character per byte."""
    spell = {b: c for c, b in byte_level_decoder().items()}
    return lambda token: "".join(spell[b] for b in token)


def tokenizer_json(tok: Tokenizer) -> dict[str, Any]:
    """The tokenizer.json that `tokenizers.Tokenizer.from_file` reads, with tok's ids."""
    if isinstance(tok, CharTokenizer):
        chars = tok.to_json()["chars"]
        model = _bpe_model({c: i for i, c in enumerate(chars)}, [], ignore_merges=False)
        return _document(model, None, {"type": "Fuse"}, {})
    bpe = byte_bpe(tok)
    merges, unbuilt = canonical_merges(bpe.ranked)
    if unbuilt and bpe.decode_only:
        raise TokenizerError(
            f"this tokenizer has both tokens no merge builds ({unbuilt[0]!r:.40}) and "
            f"decode-only tokens ({bpe.decode_only[0][0]!r:.40}); no Hugging Face BPE "
            "setting reproduces both"
        )
    s = byte_level_speller()
    vocab = {s(t): id for t, id in [*bpe.ranked, *bpe.decode_only]}
    model = _bpe_model(vocab, [[s(a), s(b)] for a, b in merges], ignore_merges=bool(unbuilt))
    pre = {"type": "Sequence", "pretokenizers": [
        {"type": "Split", "pattern": {"Regex": bpe.pattern}, "behavior": "Isolated",
         "invert": False},
        {"type": "ByteLevel", "add_prefix_space": False, "trim_offsets": True,
         "use_regex": False},
    ]}  # fmt: skip
    decoder = {"type": "ByteLevel", "add_prefix_space": True, "trim_offsets": True,
               "use_regex": True}  # fmt: skip
    return _document(model, pre, decoder, bpe.special)


def tokenizer_config(tok: Tokenizer, max_length: int) -> dict[str, Any]:
    """tokenizer_config.json: the fast tokenizer class, end-of-text, context length."""
    config: dict[str, Any] = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "model_max_length": max_length,
        "clean_up_tokenization_spaces": False,
    }
    if tok.eot_id is not None:
        config["eos_token"] = ENDOFTEXT
    return config


def _bpe_model(vocab: dict[str, int], merges: list[list[str]], ignore_merges: bool) -> dict:
    return {"type": "BPE", "dropout": None, "unk_token": None,
            "continuing_subword_prefix": None, "end_of_word_suffix": None, "fuse_unk": False,
            "byte_fallback": False, "ignore_merges": ignore_merges, "vocab": vocab,
            "merges": merges}  # fmt: skip


def _document(
    model: dict[str, Any], pre: dict[str, Any] | None, decoder: dict[str, Any],
    special: dict[str, int],
) -> dict[str, Any]:  # fmt: skip
    added = [{"id": id, "content": name, "single_word": False, "lstrip": False,
              "rstrip": False, "normalized": False, "special": True}
             for name, id in sorted(special.items(), key=lambda kv: kv[1])]  # fmt: skip
    return {"version": "1.0", "truncation": None, "padding": None, "added_tokens": added,
            "normalizer": None, "pre_tokenizer": pre, "post_processor": None,
            "decoder": decoder, "model": model}  # fmt: skip
