"""Hugging Face byte-level BPE tokenizers, imported as exact tiktoken encodings.

`tokenizer_from_hf(directory)` reads a model directory's `tokenizer.json` (or a GPT-2
style `vocab.json` + `merges.txt`) and `tokenizer_config.json`, and returns a tokenizer
whose `encode` gives the ids the `tokenizers` library gives (without special tokens):

- `TiktokenTokenizer("gpt2")` when the vocabulary, merges and pattern are GPT-2's;
- otherwise an `HFBPETokenizer`, which keeps the model's ids.

Pre-tokenizers run as one tiktoken regex: ByteLevel alone (GPT-2's regex); a regex
Split then ByteLevel (Llama 3, Qwen); Digits then ByteLevel (StarCoder, SmolLM2),
rewritten as one equivalent regex. A vocabulary may lack some single bytes (SmolLM2's
does): Hugging Face silently drops those bytes from a text, so `encode` refuses a text
that holds one (bytes that UTF-8 never uses cost nothing).

Anything else that tiktoken cannot reproduce exactly is refused with one line naming
it: SentencePiece/Unigram models, byte fallback, normalizers, Metaspace, a prefix
space, other pre-tokenizers, non-special added tokens, and merges that no ranking of
whole tokens reproduces (`minigpt.tokenizer.hf_ranks`, which explains the ranks).

Two differences stay, by design: a special token's text inside the input ("<|endoftext|>")
is encoded as ordinary text, where Hugging Face gives the special id; and the
post-processor (a BOS token the model's pipeline would prepend) is not applied.
"""

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from minigpt.errors import TokenizerError
from minigpt.fileio import PathLike, load_json_object, open_regular
from minigpt.tokenizer.encodings import ENDOFTEXT, GPT2_PATTERN, TiktokenTokenizer, Tokenizer
from minigpt.tokenizer.hf_bpe import HFBPETokenizer
from minigpt.tokenizer.hf_pattern import component_types, describe, pretokenizer_pattern, refuse
from minigpt.tokenizer.hf_ranks import byte_level_decoder, derive_ranks

MAX_HF_FILE_BYTES = 128 * 1024 * 1024  # far above any byte-level BPE's tokenizer.json
MAX_CONFIG_BYTES = 16 * 1024 * 1024
# The end-of-text token, when tokenizer_config.json names no eos_token: the first present.
EOT_NAMES = (ENDOFTEXT, "<|end_of_text|>", "</s>", "<|im_end|>")
# tokenizer_config.json fields naming special tokens (used for vocab.json + merges.txt).
CONFIG_SPECIAL_FIELDS = (
    "bos_token",
    "eos_token",
    "unk_token",
    "pad_token",
    "sep_token",
    "cls_token",
    "mask_token",
)
MODEL_NAMES = {
    "Unigram": "a Unigram (SentencePiece) model",
    "WordPiece": "a WordPiece model",
    "WordLevel": "a WordLevel model",
}


@dataclass
class HFBPE:
    """What a Hugging Face byte-level BPE says, before checking that tiktoken can run it."""

    where: str  # the file, for messages
    vocab: dict[str, int]  # token string (GPT-2's byte-to-unicode spelling) -> id
    merges: list[tuple[str, str]]
    pattern: str
    ignore_merges: bool = False
    special_tokens: dict[str, int] = field(default_factory=dict)


def tokenizer_from_hf(directory: PathLike) -> Tokenizer:
    """The tokenizer of a Hugging Face model directory, exactly as `tokenizers` runs it."""
    directory = Path(directory)
    if not directory.is_dir():
        raise TokenizerError(f"{directory} is not a directory holding a Hugging Face tokenizer")
    config = _read_config(directory / "tokenizer_config.json")
    if config.get("add_prefix_space") is True:
        raise refuse(
            directory / "tokenizer_config.json",
            "add_prefix_space=True (a space "
            "is put before the text, so encode(a + b) != encode(a) + encode(b))",
        )
    if (directory / "tokenizer.json").is_file():
        bpe = _from_tokenizer_json(directory / "tokenizer.json")
    elif (directory / "vocab.json").is_file() and (directory / "merges.txt").is_file():
        bpe = _from_vocab_merges(directory, config)
    elif (directory / "tokenizer.model").is_file():
        raise refuse(directory / "tokenizer.model", "a SentencePiece model (and no tokenizer.json)")
    else:
        raise TokenizerError(
            f"no tokenizer in {directory}: expected tokenizer.json, or vocab.json and merges.txt"
        )
    eot = _eot_name(bpe, config, directory)
    vocab = _vocab_bytes(bpe)
    merges = _merge_bytes(bpe, vocab)
    ranked, decode_only = derive_ranks(vocab, merges, bpe.ignore_merges, bpe.where)
    if _is_gpt2(ranked, decode_only, bpe, eot):
        return TiktokenTokenizer("gpt2")
    return HFBPETokenizer(ranked, bpe.pattern, bpe.special_tokens, eot, decode_only)


def _read_config(path: Path) -> dict[str, Any]:
    return load_json_object(path, MAX_CONFIG_BYTES, TokenizerError) if path.is_file() else {}


def _get(d: Any, key: str, typ: type | tuple[type, ...], where: object, what: str) -> Any:
    """d[key] checked to be a `typ` (a missing key reads as None, allowed if typ allows it)."""
    value = d.get(key) if isinstance(d, dict) else None
    if not isinstance(value, typ) or (isinstance(value, bool) and typ is int):
        raise TokenizerError(f"{where}: {what} must be {_typename(typ)}, got {value!r:.80}")
    return value


def _typename(typ: type | tuple[type, ...]) -> str:
    names = {
        dict: "an object",
        list: "a list",
        str: "a string",
        int: "an integer",
        bool: "true or false",
        type(None): "null",
    }
    return " or ".join(names[t] for t in (typ if isinstance(typ, tuple) else (typ,)))


def _from_tokenizer_json(path: Path) -> HFBPE:
    d = load_json_object(path, MAX_HF_FILE_BYTES, TokenizerError)
    model = _get(d, "model", dict, path, "model")
    kind = model.get("type", "BPE" if "merges" in model else None)
    if kind != "BPE":
        raise refuse(path, MODEL_NAMES.get(kind, f"a model of type {kind!r:.40}"))
    if model.get("byte_fallback"):
        raise refuse(
            path,
            "a BPE with byte_fallback (SentencePiece-style <0x..> byte "
            "tokens, as in Llama 2 or TinyLlama)",
        )
    if model.get("dropout") not in (None, 0, 0.0):
        raise refuse(path, f"BPE dropout={model['dropout']!r:.20} (random merges)")
    for key in ("continuing_subword_prefix", "end_of_word_suffix"):
        if model.get(key):
            raise refuse(path, f"a BPE {key} ({model[key]!r:.20})")
    normalizer = d.get("normalizer")
    if normalizer is not None and not _empty_sequence(normalizer, "normalizers"):
        raise refuse(path, f"a normalizer that changes the text ({describe(normalizer)})")
    pattern = pretokenizer_pattern(d.get("pre_tokenizer"), path)
    decoder = d.get("decoder")
    if component_types(decoder) != ["ByteLevel"]:
        raise refuse(path, f"a {describe(decoder)} decoder (byte-level BPE decodes with ByteLevel)")
    vocab = _get(model, "vocab", dict, path, "model.vocab")
    merges = _get(model, "merges", list, path, "model.merges")
    ignore = _get(model, "ignore_merges", (bool, type(None)), path, "model.ignore_merges")
    bpe = HFBPE(str(path), vocab, _merge_pairs(merges, path), pattern, bool(ignore))
    for added in _get(d, "added_tokens", (list, type(None)), path, "added_tokens") or []:
        content = _get(added, "content", str, path, "an added token's content")
        id = _get(added, "id", int, path, f"the id of added token {content!r:.40}")
        if not added.get("special"):
            raise refuse(
                path,
                f"the non-special added token {content!r:.40} (id {id}), which "
                "Hugging Face cuts out of any text before BPE",
            )
        _add_special(bpe, content, id)
    return bpe


def _empty_sequence(d: Any, key: str) -> bool:
    return isinstance(d, dict) and d.get("type") == "Sequence" and d.get(key) == []


def _merge_pairs(merges: list[Any], path: object) -> list[tuple[str, str]]:
    """Merges as pairs: "a b" strings (older files, merges.txt) or [a, b] lists."""
    pairs = []
    for n, m in enumerate(merges):
        pair = m.split(" ") if isinstance(m, str) else m
        if not (
            isinstance(pair, list) and len(pair) == 2 and all(isinstance(p, str) for p in pair)
        ):
            raise TokenizerError(f"{path}: merge {n} is not a pair of tokens: {m!r:.80}")
        pairs.append((pair[0], pair[1]))
    return pairs


def _add_special(bpe: HFBPE, content: str, id: int) -> None:
    if bpe.special_tokens.get(content, id) != id or id in bpe.special_tokens.values():
        raise TokenizerError(
            f"{bpe.where}: special token {content!r:.40} (id {id}) conflicts "
            "with another special token"
        )
    if bpe.vocab.get(content, id) != id:
        raise TokenizerError(
            f"{bpe.where}: special token {content!r:.40} has id {id} but the "
            f"vocabulary gives it {bpe.vocab[content]}"
        )
    bpe.special_tokens[content] = id


def _from_vocab_merges(directory: Path, config: dict[str, Any]) -> HFBPE:
    """A GPT-2 style slow tokenizer: vocab.json, merges.txt, GPT-2's ByteLevel regex."""
    vocab_path, merges_path = directory / "vocab.json", directory / "merges.txt"
    vocab = load_json_object(vocab_path, MAX_HF_FILE_BYTES, TokenizerError)
    try:
        with open_regular(merges_path) as f:
            raw = f.read(MAX_HF_FILE_BYTES + 1)
        text = raw.decode("utf-8")
    except OSError as e:
        raise TokenizerError(f"cannot read {merges_path}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise TokenizerError(f"{merges_path} is not UTF-8 text: {e}") from e
    if len(raw) > MAX_HF_FILE_BYTES:
        raise TokenizerError(
            f"{merges_path} is too large (larger than {MAX_HF_FILE_BYTES:,} bytes)"
        )
    lines = [ln for ln in text.split("\n") if ln and not ln.startswith("#version")]
    bpe = HFBPE(
        str(directory / "vocab.json"), vocab, _merge_pairs(lines, merges_path), GPT2_PATTERN
    )
    added = _get(
        config, "added_tokens_decoder", (dict, type(None)), directory, "added_tokens_decoder"
    )
    for key, entry in (added or {}).items():
        content = _get(entry, "content", str, directory, f"added token {key!r:.20}")
        if not key.isdigit() or not entry.get("special"):
            raise refuse(
                directory / "tokenizer_config.json",
                f"the added token {content!r:.40} (id {key!r:.20}), which is not special",
            )
        _add_special(bpe, content, int(key))
    # The special tokens a slow tokenizer keeps in vocab.json: those its config names
    # (GPT-2's files name none: "<|endoftext|>" is its bos, eos and unk by default).
    named = [_token_name(config.get(k)) for k in CONFIG_SPECIAL_FIELDS]
    named += [_token_name(t) for t in config.get("additional_special_tokens") or []]
    for name in [n for n in named if n is not None] or [ENDOFTEXT]:
        if name in vocab and name not in bpe.special_tokens:
            _add_special(bpe, name, vocab[name])
    return bpe


def _token_name(value: Any) -> str | None:
    """A special token as tokenizer_config.json writes it: a string or {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) and value else None


def _eot_name(bpe: HFBPE, config: dict[str, Any], directory: Path) -> str | None:
    """The model's end-of-text token: the config's eos_token, else the first of EOT_NAMES."""
    eos = _token_name(config.get("eos_token"))
    if eos is not None:
        if eos not in bpe.special_tokens:
            raise TokenizerError(
                f"{directory / 'tokenizer_config.json'}: eos_token {eos!r:.40} is not a special "
                f"token of {bpe.where}"
            )
        return eos
    return next((name for name in EOT_NAMES if name in bpe.special_tokens), None)


def _vocab_bytes(bpe: HFBPE) -> dict[bytes, int]:
    """The ordinary tokens (special ones left out) as bytes -> id."""
    to_byte = byte_level_decoder()
    out: dict[bytes, int] = {}
    for token, id in bpe.vocab.items():
        if token in bpe.special_tokens:
            continue
        if type(id) is not int or id < 0:
            raise TokenizerError(f"{bpe.where}: token {token!r:.40} has id {id!r:.20}")
        try:
            out[bytes(to_byte[c] for c in token)] = id
        except KeyError:
            raise refuse(
                bpe.where,
                f"the token {token!r:.40} (id {id}), which is not "
                "spelled in byte-level BPE's alphabet",
            ) from None
    if len(set(out.values())) != len(out):
        raise TokenizerError(f"{bpe.where}: two tokens of the vocabulary share an id")
    return out


def _merge_bytes(bpe: HFBPE, vocab: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """The merges as pairs of token bytes; each part and its result must be ordinary tokens."""
    to_byte = byte_level_decoder()
    spelled = {token: bytes(to_byte[c] for c in token) for token in bpe.vocab
               if token not in bpe.special_tokens}  # fmt: skip
    out = []
    for n, (a, b) in enumerate(bpe.merges):
        if a not in spelled or b not in spelled or a + b not in spelled:
            part = next(p for p in (a, b, a + b) if p not in spelled)
            what = "a special token" if part in bpe.special_tokens else "not in the vocabulary"
            raise TokenizerError(
                f"{bpe.where}: merge {n} ({a!r:.40} {b!r:.40}) uses {part!r:.40}, which is {what}"
            )
        out.append((spelled[a], spelled[b]))
    return out


def _is_gpt2(
    ranked: list[tuple[bytes, int]], decode_only: list[Any], bpe: HFBPE, eot: str | None
) -> bool:
    """Whether this is exactly tiktoken's gpt2 encoding: same bytes -> id, rank order and
    pattern, and <|endoftext|> = 50256 as its only special token."""
    if (bpe.pattern, bpe.special_tokens, eot) != (GPT2_PATTERN, {ENDOFTEXT: 50256}, ENDOFTEXT):
        return False
    if decode_only or len(ranked) != 50256 or [id for _, id in ranked] != list(range(50256)):
        return False
    gpt2 = TiktokenTokenizer("gpt2")
    if gpt2.vocab_size != 50257 or gpt2.eot_id != 50256:
        return False
    return all(gpt2.token_bytes(id) == token for token, id in ranked)
