"""Importing Hugging Face byte-level BPE tokenizers (`minigpt.tokenizer.hf`).

Every tokenizer here is built locally with the `tokenizers` library (no downloads),
and the imported one must give the same ids as `tokenizers` on 1,200 generated strings
(English, code, Korean, Japanese, emoji, whitespace runs, digits, mixed) plus
hypothesis's text, and decode them back. Whatever tiktoken cannot reproduce exactly is
refused with one line.
"""

import base64
import json
import random
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import AddedToken, Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer

from minigpt.errors import TokenizerError
from minigpt.tokenizer import (
    HFBPETokenizer,
    TiktokenTokenizer,
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_hf,
    tokenizer_from_json,
)
from minigpt.tokenizer.hf_ranks import byte_level_decoder

LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|"
    r" ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# ---------------------------------------------------------------------------------
# A deterministic corpus of many scripts and shapes.

FRAGMENTS = {
    "english": "the quick brown fox jumps over a lazy dog It's we'll they're I'M DON'T "
    "You've she'd Hello world tokenizer Byte pair encoding merges ranks".split(),
    "code": [
        "def f(x):\n    return x**2  # square",
        "if (a && b) { c++; }",
        '{"key": [1, 2.5e-3, null]}',
        "for i in range(10):\n\tprint(i)",
        "x=y+z;//comment",
        "<div class='a'>&nbsp;</div>",
        "SELECT * FROM t WHERE id=42;",
        "a_b_c __init__ self._x",
    ],
    "korean": ["안녕하세요", "한국어 텍스트", "토크나이저", "가나다라마바사", "서울에서"],
    "japanese": ["こんにちは世界", "カタカナ", "日本語の文章です。", "東京タワー", "ｶﾀｶﾅ"],
    "other": ["привет мир", "مرحبا", "Γειά σου", "café naïve", "e\u0301", "中文", "ß ẞ ǅ ½ Ⅻ ①"],
    "emoji": ["😀", "👍🏽", "👨‍👩‍👧", "🇰🇷", "🎉🎉", "❤️", "🤖"],
    "space": [" ", "  ", "   ", "\n", "\n\n", "\n\n\n", "\t", "\r\n", "\u00a0", "\u3000", " \n "],
    "digits": ["0", "42", "123456789", "3.14159", "1,000,000", "2024-01-01", "0x1F"],
    "punct": ["...", "!?", "—", "«»", "''", '"', "(", ")", "--", "***", "'s", "'"],
}
SEPARATORS = ["", " ", " ", "  ", "\n", "\t", "", ", "]


def corpus(n: int, seed: int) -> list[str]:
    """n strings, each a few fragments of random kinds with random separators."""
    rng = random.Random(seed)
    kinds = sorted(FRAGMENTS)
    out = []
    for _ in range(n):
        parts = []
        for _ in range(rng.randint(1, 10)):
            kind = rng.choice(kinds)
            if kind == "digits" and rng.random() < 0.5:
                parts.append(str(rng.randrange(10 ** rng.randint(1, 14))))
            elif kind == "space" and rng.random() < 0.3:
                parts.append(rng.choice(" \n\t") * rng.randint(2, 40))
            else:
                parts.append(rng.choice(FRAGMENTS[kind]))
            parts.append(rng.choice(SEPARATORS))
        out.append("".join(parts))
    out += ["", " ", "\n" * 3, " " * 200 + "x", "a" * 3000, "😀" * 50, "\x00\x01\x1f\x7f"]
    return out


STRINGS = corpus(1200, seed=0)
TRAINING = corpus(3000, seed=1)


def assert_same_ids(tok, hf: HFTokenizer, strings: list[str]) -> None:
    """The ids of `tok` equal Hugging Face's for every string, and decode back to it."""
    expected = [e.ids for e in hf.encode_batch(strings, add_special_tokens=False)]
    got = [tok.encode(s) for s in strings]
    wrong = [(s, g, e) for s, g, e in zip(strings, got, expected, strict=True) if g != e]
    assert not wrong, f"{len(wrong)} strings differ, first: {wrong[0]}"
    for s, ids in zip(strings, expected, strict=True):
        assert tok.decode(ids) == s


def assert_round_trip(tok, tmp_path: Path) -> None:
    """save_tokenizer/load_tokenizer give the same tokenizer back."""
    save_tokenizer(tok, tmp_path / "saved.json")
    back = load_tokenizer(tmp_path / "saved.json")
    assert type(back) is type(tok) and back.spec() == tok.spec()
    assert back.to_json() == tok.to_json()
    assert (back.eot_id, back.special_ids, back.vocab_size) == (
        tok.eot_id,
        tok.special_ids,
        tok.vocab_size,
    )
    for s in STRINGS[:100]:
        assert back.encode(s) == tok.encode(s)


def train(
    pre_tokenizer, special: list[str], all_bytes: bool = True, texts: list[str] = TRAINING
) -> HFTokenizer:
    """A BPE of 1,500 ids trained here; without all_bytes, on the bytes `texts` hold."""
    hf = HFTokenizer(models.BPE())
    hf.pre_tokenizer = pre_tokenizer
    hf.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1500,
        special_tokens=special,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet() if all_bytes else [],
        show_progress=False,
    )
    hf.train_from_iterator(texts, trainer)
    return hf


def write(directory: Path, hf: HFTokenizer, config: dict | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    hf.save(str(directory / "tokenizer.json"))
    if config is not None:
        (directory / "tokenizer_config.json").write_text(json.dumps(config))
    return directory


# ---------------------------------------------------------------------------------
# The tokenizers under test.


@pytest.fixture(scope="module")
def gpt2_style(tmp_path_factory) -> Path:
    """(1) GPT-2 style: ByteLevel pre-tokenizer (GPT-2's regex), trained here."""
    hf = train(pre_tokenizers.ByteLevel(add_prefix_space=False), ["<|endoftext|>", "<pad>"])
    return write(tmp_path_factory.mktemp("gpt2_style"), hf)


@pytest.fixture(scope="module")
def llama3_style(tmp_path_factory) -> Path:
    """(2) Llama 3 / SmolLM style: a regex Split, then ByteLevel without its regex."""
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    hf = train(pre, ["<|begin_of_text|>", "<|end_of_text|>"])
    config = {"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|end_of_text|>"}}
    return write(tmp_path_factory.mktemp("llama3_style"), hf, config)


NO_RANK = 1 << 30


def digits_then_byte_level(individual: bool):
    return pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=individual),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )


@pytest.fixture(scope="module")
def smollm2_style(tmp_path_factory) -> Path:
    """StarCoder / SmolLM2 style: Digits (each alone), then ByteLevel with GPT-2's regex;
    trained without the full byte alphabet, so bytes the corpus lacks have no token."""
    texts = [t for t in TRAINING if not any(c in t for c in "\x00\x01\x1f\x7f")]
    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    hf = train(digits_then_byte_level(True), special, all_bytes=False, texts=texts)
    directory = tmp_path_factory.mktemp("smollm2_style")
    return write(directory, hf, {"eos_token": "<|im_end|>", "bos_token": "<|im_start|>"})


def gpt2_merges(ranks: dict[bytes, int]) -> list[tuple[bytes, bytes]]:
    """GPT-2's merge list from tiktoken's ranks: each token in rank order, split where
    BPE by rank leaves it in two pieces (this is exactly GPT-2's vocab.bpe)."""
    merges = []
    for token, _ in sorted(ranks.items(), key=lambda kv: kv[1]):
        parts = [token[i : i + 1] for i in range(len(token))]
        while len(parts) > 2:
            pairs = [
                (ranks.get(a + b, NO_RANK), i)
                for i, (a, b) in enumerate(zip(parts, parts[1:], strict=False))
            ]
            _, i = min(pairs)
            parts[i : i + 2] = [parts[i] + parts[i + 1]]
        if len(parts) == 2:
            merges.append((parts[0], parts[1]))
    return merges


@pytest.fixture(scope="module")
def gpt2_exact(tmp_path_factory) -> dict[str, Path]:
    """(3) GPT-2's own vocabulary, exported from tiktoken's gpt2 encoding: as vocab.json +
    merges.txt (a slow tokenizer's files) and as a tokenizer.json built from them."""
    gpt2 = TiktokenTokenizer("gpt2")
    ranks = {gpt2.token_bytes(i): i for i in range(50256)}
    spell = {b: c for c, b in byte_level_decoder().items()}

    def s(token: bytes) -> str:
        return "".join(spell[b] for b in token)

    slow = tmp_path_factory.mktemp("gpt2_slow")
    vocab = {s(t): i for t, i in ranks.items()} | {"<|endoftext|>": 50256}
    (slow / "vocab.json").write_text(json.dumps(vocab))
    lines = [f"{s(a)} {s(b)}" for a, b in gpt2_merges(ranks)]
    (slow / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n")
    hf = HFTokenizer(models.BPE.from_file(str(slow / "vocab.json"), str(slow / "merges.txt")))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    hf.add_special_tokens([AddedToken("<|endoftext|>", special=True, normalized=False)])
    config = {"eos_token": "<|endoftext|>", "add_prefix_space": False}
    fast = write(tmp_path_factory.mktemp("gpt2_fast"), hf, config)
    return {"slow": slow, "fast": fast}


@pytest.fixture(scope="module")
def converted(tmp_path_factory) -> Path:
    """A tiktoken vocabulary converted the way Llama 3's was: transformers'
    TikTokenConverter lists every split of a token into two tokens as a merge (so a token
    has several), and sets ignore_merges. Here from GPT-2's ranks, with Llama 3's regex."""
    convert = pytest.importorskip("transformers.convert_slow_tokenizer")
    gpt2 = TiktokenTokenizer("gpt2")
    ranks = {gpt2.token_bytes(i): i for i in range(50256)}
    converter = convert.TikTokenConverter(
        vocab_file="(in memory)",
        pattern=LLAMA3_PATTERN,
        extra_special_tokens=["<|begin_of_text|>", "<|end_of_text|>"],
    )
    converter.load_tiktoken_bpe = lambda _: ranks  # no file: the ranks we have
    hf = converter.converted()
    return write(tmp_path_factory.mktemp("converted"), hf, {"eos_token": "<|end_of_text|>"})


# ---------------------------------------------------------------------------------
# Equivalence.


def test_gpt2_style_trained_tokenizer_gives_hugging_faces_ids(gpt2_style, tmp_path):
    tok = tokenizer_from_hf(gpt2_style)
    hf = HFTokenizer.from_file(str(gpt2_style / "tokenizer.json"))
    assert isinstance(tok, HFBPETokenizer)
    # The trainer puts the special tokens first: the ids are Hugging Face's, not ranks.
    assert tok.eot_id == hf.token_to_id("<|endoftext|>") == 0
    assert tok.special_ids == {0, 1} and tok.special_id("<pad>") == 1
    assert tok.vocab_size == hf.get_vocab_size() == 1500
    assert_same_ids(tok, hf, STRINGS)
    assert tok.token_bytes(0) == b"<|endoftext|>"
    assert tok.token_byte_lengths()[:2] == [0, 0]
    assert sum(tok.token_byte_lengths()) == sum(len(tok.token_bytes(i)) for i in range(2, 1500))
    assert_round_trip(tok, tmp_path)


def test_llama3_style_tokenizer_gives_hugging_faces_ids(llama3_style, tmp_path):
    tok = tokenizer_from_hf(llama3_style)
    hf = HFTokenizer.from_file(str(llama3_style / "tokenizer.json"))
    assert isinstance(tok, HFBPETokenizer)
    assert tok.eot_id == hf.token_to_id("<|end_of_text|>")  # tokenizer_config's eos_token
    assert tok.special_id("<|begin_of_text|>") == hf.token_to_id("<|begin_of_text|>")
    assert tok.to_json()["pattern"] == LLAMA3_PATTERN
    assert_same_ids(tok, hf, STRINGS)
    assert_round_trip(tok, tmp_path)


NUMBERS = [
    "12345 a1b2 3.14159 x=42; 1,000,000 2024-01-01",
    "٣٣٣ ①②③ ½ Ⅻ 𝟙𝟚 ௧௨",
    "a\U00011de0\U00011de1 5\U00016ff4 7 \U00011de9x",  # numerals only Rust's tables know
    "  7\n\n8 \t9  x 1",
]


@pytest.mark.parametrize("individual", [True, False])
def test_digits_then_byte_level_gives_hugging_faces_ids(tmp_path, individual):
    hf = train(digits_then_byte_level(individual), ["<|endoftext|>"])
    directory = write(tmp_path / "t", hf)
    tok = tokenizer_from_hf(directory)
    assert isinstance(tok, HFBPETokenizer)
    assert_same_ids(tok, hf, NUMBERS + STRINGS)
    assert_round_trip(tok, tmp_path)


def absent_bytes(tok: HFBPETokenizer) -> set[int]:
    """The bytes that no token of `tok` stands for alone."""
    ranked = map(base64.b64decode, tok.to_json()["ranks"])
    return set(range(256)) - {t[0] for t in ranked if len(t) == 1}


def test_smollm2_style_tokenizer_without_every_byte(smollm2_style, tmp_path):
    """Texts whose bytes all have tokens give Hugging Face's ids; a text holding a byte
    without one is refused, where Hugging Face silently drops it."""
    tok = tokenizer_from_hf(smollm2_style)
    hf = HFTokenizer.from_file(str(smollm2_style / "tokenizer.json"))
    assert isinstance(tok, HFBPETokenizer)
    assert tok.eot_id == hf.token_to_id("<|im_end|>") == 2
    absent = absent_bytes(tok)
    assert {0x00, 0x01, 0xFF} <= absent
    usable = [t for t in NUMBERS + STRINGS if not set(t.encode()) & absent]
    assert len(usable) > 1000
    assert_same_ids(tok, hf, usable)
    for text in ["a\x01b", "ok \x00", "\x7f"]:
        with pytest.raises(TokenizerError, match="lacks") as e:
            tok.encode(text)
        assert "\n" not in str(e.value)
        assert hf.decode(hf.encode(text, add_special_tokens=False).ids) != text  # dropped
    assert_round_trip(tok, tmp_path)


@pytest.mark.parametrize("layout", ["fast", "slow"])
def test_gpt2s_own_vocabulary_is_tiktokens_gpt2(gpt2_exact, layout):
    tok = tokenizer_from_hf(gpt2_exact[layout])
    assert isinstance(tok, TiktokenTokenizer) and tok.name == "gpt2"
    assert tok.eot_id == 50256
    hf = HFTokenizer.from_file(str(gpt2_exact["fast"] / "tokenizer.json"))
    assert_same_ids(tok, hf, STRINGS)


def test_gpt2_merges_export_is_gpt2s_vocab_bpe(gpt2_exact):
    """The exported merges.txt is GPT-2's: its first merges, and one per token."""
    lines = (gpt2_exact["slow"] / "merges.txt").read_text().splitlines()
    assert lines[:4] == ["#version: 0.2", "Ġ t", "Ġ a", "h e"]
    assert len(lines) == 50001


def test_a_near_gpt2_vocabulary_is_not_called_gpt2(gpt2_exact, tmp_path):
    """One more special token, or other ids: the same merges, but not tiktoken's gpt2."""
    d = json.loads((gpt2_exact["fast"] / "tokenizer.json").read_text())
    d["added_tokens"].append({**d["added_tokens"][0], "id": 50257, "content": "<|pad|>"})
    (tmp_path / "tokenizer.json").write_text(json.dumps(d))
    tok = tokenizer_from_hf(tmp_path)
    assert isinstance(tok, HFBPETokenizer) and tok.eot_id == 50256
    assert tok.encode("hello world") == [31373, 995]


def test_converted_tiktoken_vocabulary_with_several_merges_per_token(converted, tmp_path):
    """Llama 3's kind of tokenizer.json: many merges give the same token, listed by the
    ranks of their parts, and ignore_merges; the import still reproduces it exactly."""
    d = json.loads((converted / "tokenizer.json").read_text())
    assert d["model"]["ignore_merges"] and len(d["model"]["merges"]) > 100_000
    tok = tokenizer_from_hf(converted)
    hf = HFTokenizer.from_file(str(converted / "tokenizer.json"))
    assert isinstance(tok, HFBPETokenizer)
    assert tok.eot_id == hf.token_to_id("<|end_of_text|>") == 50257
    assert_same_ids(tok, hf, STRINGS)
    assert_round_trip(tok, tmp_path)


# ---------------------------------------------------------------------------------
# Ids that are not ranks, and tokens that only decode.


def test_ids_in_another_order_than_the_merges(gpt2_style, tmp_path):
    """Shuffled ids: tiktoken runs on ranks, and its output is mapped to the model's ids."""
    d = json.loads((gpt2_style / "tokenizer.json").read_text())
    ids = list(range(len(d["model"]["vocab"])))
    random.Random(3).shuffle(ids)
    d["model"]["vocab"] = {t: ids[i] for t, i in d["model"]["vocab"].items()}
    for added in d["added_tokens"]:
        added["id"] = d["model"]["vocab"][added["content"]]
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "tokenizer.json").write_text(json.dumps(d))
    tok = tokenizer_from_hf(tmp_path / "in")
    hf = HFTokenizer.from_file(str(tmp_path / "in" / "tokenizer.json"))
    saved = tok.to_json()
    merged = [i for i, t in zip(saved["ids"], saved["ranks"], strict=True) if len(t) > 4]
    assert merged != sorted(merged)  # ranks and ids really disagree
    assert tok.eot_id == hf.token_to_id("<|endoftext|>")
    assert_same_ids(tok, hf, STRINGS[:400])
    assert_round_trip(tok, tmp_path)


@pytest.mark.parametrize("ignore_merges", [False, True])
def test_a_token_no_merge_builds(gpt2_style, tmp_path, ignore_merges):
    """A vocabulary token no merge produces: decode-only, or, with ignore_merges, given
    for exactly that whole piece, as Hugging Face does."""
    d = json.loads((gpt2_style / "tokenizer.json").read_text())
    d["model"]["vocab"]["ĠzqxjQ"] = 1500
    d["model"]["ignore_merges"] = ignore_merges
    (tmp_path / "tokenizer.json").write_text(json.dumps(d))
    tok = tokenizer_from_hf(tmp_path)
    hf = HFTokenizer.from_file(str(tmp_path / "tokenizer.json"))
    assert tok.vocab_size == 1501 and tok.decode([1500]) == " zqxjQ"
    assert tok.token_byte_lengths()[1500] == 6
    for s in ["a zqxjQ", "a zqxjQz", "zqxjQ", "x zqxjQ!"]:
        assert tok.encode(s) == hf.encode(s, add_special_tokens=False).ids
    assert (1500 in tok.encode("a zqxjQ")) is ignore_merges
    assert_same_ids(tok, hf, STRINGS[:200])
    assert_round_trip(tok, tmp_path)


def test_decoding_bad_ids(gpt2_style, tmp_path):
    d = json.loads((gpt2_style / "tokenizer.json").read_text())
    d["model"]["vocab"]["ĠzqxjQ"] = 1600  # ids 1500..1599 unused
    (tmp_path / "tokenizer.json").write_text(json.dumps(d))
    tok = tokenizer_from_hf(tmp_path)
    assert tok.vocab_size == 1601
    for ids, message in [([1550], "not used"), ([1601], "out of range"), ([-1], "out of range")]:
        with pytest.raises(TokenizerError, match=message):
            tok.decode(ids)
    with pytest.raises(TokenizerError, match="integers"):
        tok.decode([1.5])  # type: ignore[list-item]
    assert tok.token_byte_lengths()[1550] == 0


def test_hf_bpe_json_is_validated(llama3_style):
    good = tokenizer_from_hf(llama3_style).to_json()
    assert tokenizer_from_json(good).spec()["kind"] == "hf-bpe"
    broken = [
        {"ids": good["ids"][:-1]},
        {"ids": [good["ids"][1]] + good["ids"][1:]},
        {"eot": "<|nope|>"},
        {"eot": 3},
        {"decode_only": [[5, "QUE="]]},
        {"decode_only": [7]},
        {"ranks": good["ranks"][:100], "ids": good["ids"][:100]},
        {"pattern": "(a)\\1"},
        {"pattern": "[a-z]+"},  # leaves text unmatched: tiktoken would drop it
        {"special_tokens": {"<|end_of_text|>": -1}},
        {"vocab_size": good["vocab_size"] + 1},
    ]
    for change in broken:
        with pytest.raises(TokenizerError):
            tokenizer_from_json(good | change)


# ---------------------------------------------------------------------------------
# Hypothesis: any text.


_LOADED: dict[Path, tuple] = {}


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=80))
def test_any_text_gives_hugging_faces_ids(llama3_style, gpt2_style, smollm2_style, text):
    for directory in (llama3_style, gpt2_style, smollm2_style):
        if directory not in _LOADED:
            tok = tokenizer_from_hf(directory)
            hf = HFTokenizer.from_file(str(directory / "tokenizer.json"))
            _LOADED[directory] = (tok, hf, absent_bytes(tok))
        tok, hf, absent = _LOADED[directory]
        if set(text.encode()) & absent:
            with pytest.raises(TokenizerError, match="lacks"):
                tok.encode(text)
            continue
        assert tok.encode(text) == hf.encode(text, add_special_tokens=False).ids
        assert tok.decode(tok.encode(text)) == text


# ---------------------------------------------------------------------------------
# Refusals: one line naming what cannot be reproduced.


def refused(directory: Path, *words: str) -> str:
    with pytest.raises(TokenizerError) as e:
        tokenizer_from_hf(directory)
    message = str(e.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message


def json_dir(tmp_path: Path, d: dict, name: str = "t") -> Path:
    (tmp_path / name).mkdir()
    (tmp_path / name / "tokenizer.json").write_text(json.dumps(d))
    return tmp_path / name


def test_merges_no_ranking_reproduces_are_refused(tmp_path):
    """ignore_merges gives "abc" for the whole piece, but merging stops at a + bc: no
    rank for "abc" lets tiktoken give it for "abc" and not inside "abcd"."""
    vocab = {c: i for i, c in enumerate(sorted(byte_level_decoder()))}
    merges = [("b", "c"), ("a", "b"), ("ab", "c")]
    hf = byte_level_bpe(["bc", "ab", "abc"], merges, ignore_merges=True)
    directory = write(tmp_path / "t", hf)
    assert hf.encode("abc").ids == [258]
    assert hf.encode("abcd").ids == [vocab["a"], 256, vocab["d"]]  # the rest of the story
    refused(directory, "'abc'", "ignore_merges", "does not approximate")
    # Without ignore_merges, "abc" is a token only decoding gives: that is reproducible.
    hf = byte_level_bpe(["bc", "ab", "abc"], merges)
    tok = tokenizer_from_hf(write(tmp_path / "u", hf))
    assert tok.encode("abc") == hf.encode("abc").ids == [vocab["a"], 256]
    assert tok.decode([258]) == "abc"


def byte_level_bpe(vocab_extra: list[str], merges: list[tuple[str, str]], **options) -> HFTokenizer:
    """A hand-made byte-level BPE: the 256 byte tokens, then `vocab_extra`."""
    vocab = {c: i for i, c in enumerate(sorted(byte_level_decoder()))}
    vocab |= {t: 256 + i for i, t in enumerate(vocab_extra)}
    hf = HFTokenizer(models.BPE(vocab, merges, **options))
    hf.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    hf.decoder = decoders.ByteLevel()
    return hf


def test_a_token_ranks_by_the_merge_that_builds_it(tmp_path):
    """ "abc" is listed first as a + bc, but Hugging Face builds it from ab + c (ab comes
    before bc): ranked by its first merge, tiktoken would turn "abcd" into abc + d."""
    merges = [("a", "bc"), ("a", "b"), ("b", "c"), ("c", "d"), ("ab", "c")]
    hf = byte_level_bpe(["ab", "bc", "cd", "abc"], merges)
    tok = tokenizer_from_hf(write(tmp_path / "t", hf))
    assert hf.encode("abcd").ids == [256, 258]  # ab + cd
    assert hf.encode("abc").ids == [259]
    for s in ["abcd", "abc", "xabcd", "abcabcd", "bcd", "abcdabc"]:
        assert tok.encode(s) == hf.encode(s).ids, s


def test_sentencepiece_style_tokenizers_are_refused(tmp_path):
    unigram = HFTokenizer(models.Unigram([("<unk>", 0.0), ("a", -1.0), ("b", -2.0)], 0))
    refused(write(tmp_path / "unigram", unigram), "Unigram")
    # Llama 2 / TinyLlama: BPE over SentencePiece pieces, <0x..> byte fallback, "▁".
    vocab = {"<unk>": 0, "<0x41>": 1, "▁": 2, "a": 3, "▁a": 4}
    llama2 = HFTokenizer(models.BPE(vocab, [("▁", "a")], unk_token="<unk>", byte_fallback=True))
    llama2.normalizer = normalizers.Sequence(
        [normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")]
    )
    refused(write(tmp_path / "llama2", llama2), "byte_fallback", "Llama 2")
    llama2.model = models.BPE(vocab, [("▁", "a")], unk_token="<unk>")
    refused(write(tmp_path / "prepend", llama2), "normalizer", "Prepend+Replace")
    llama2.normalizer = None
    llama2.pre_tokenizer = pre_tokenizers.Metaspace()
    refused(write(tmp_path / "metaspace", llama2), "Metaspace")
    (tmp_path / "spm").mkdir()
    (tmp_path / "spm" / "tokenizer.model").write_bytes(b"\x0a\x00")
    refused(tmp_path / "spm", "SentencePiece")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"normalizer": {"type": "NFKC"}}, ["normalizer", "NFKC"]),
        ({"normalizer": {"type": "Lowercase"}}, ["normalizer", "Lowercase"]),
        ({"pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": True}}, ["add_prefix_space"]),
        ({"pre_tokenizer": {"type": "ByteLevel", "use_regex": False}}, ["one piece"]),
        ({"pre_tokenizer": {"type": "Whitespace"}}, ["Whitespace pre-tokenizer"]),
        ({"pre_tokenizer": None}, ["missing pre-tokenizer"]),
        ({"decoder": {"type": "WordPiece"}}, ["WordPiece decoder"]),
        ({"model": {"type": "WordPiece", "vocab": {}}}, ["WordPiece model"]),
        ({"model_change": {"dropout": 0.1}}, ["dropout"]),
        ({"model_change": {"continuing_subword_prefix": "##"}}, ["continuing_subword_prefix"]),
        ({"added": {"special": False}}, ["non-special added token"]),
    ],
)
def test_what_changes_the_text_is_refused(gpt2_style, tmp_path, change, words):
    d = json.loads((gpt2_style / "tokenizer.json").read_text())
    d["model"].update(change.pop("model_change", {}))
    d["added_tokens"][1].update(change.pop("added", {}))
    d.update(change)
    refused(json_dir(tmp_path, d), *words)


def test_split_pre_tokenizers_tiktoken_cannot_run_are_refused(llama3_style, tmp_path):
    d = json.loads((llama3_style / "tokenizer.json").read_text())
    split = d["pre_tokenizer"]["pretokenizers"][0]
    for n, (change, words) in enumerate(
        [
            ({"behavior": "MergedWithPrevious"}, ["MergedWithPrevious"]),
            ({"invert": True}, ["invert=True"]),
            ({"pattern": {"String": " "}}, ["not on a regex"]),
        ]
    ):
        d["pre_tokenizer"]["pretokenizers"][0] = split | change
        refused(json_dir(tmp_path, d, f"s{n}"), "Split", *words)
    d["pre_tokenizer"]["pretokenizers"] = [split, {"type": "ByteLevel", "use_regex": True}]
    refused(json_dir(tmp_path, d, "double"), "GPT-2's regex after a Split")


def test_config_prefix_space_and_eos_are_checked(llama3_style, tmp_path):
    directory = json_dir(tmp_path, json.loads((llama3_style / "tokenizer.json").read_text()))
    (directory / "tokenizer_config.json").write_text('{"add_prefix_space": true}')
    refused(directory, "add_prefix_space")
    (directory / "tokenizer_config.json").write_text('{"eos_token": "</s>"}')
    refused(directory, "eos_token '</s>'", "not a special token")
    (directory / "tokenizer_config.json").write_text("{}")  # the first of the usual names
    assert tokenizer_from_hf(directory).eot_id == 1


def test_missing_and_malformed_files_are_one_line_errors(gpt2_style, tmp_path):
    refused(tmp_path / "nowhere", "not a directory")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", "no tokenizer", "vocab.json and merges.txt")
    good = (gpt2_style / "tokenizer.json").read_text()
    for name, text, words in [
        ("truncated", good[: len(good) // 2], ["not valid JSON"]),
        ("list", "[1, 2]", ["not a JSON object"]),
        ("nan", '{"model": NaN}', ["not valid JSON"]),
        ("no_model", "{}", ["model must be an object"]),
    ]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "tokenizer.json").write_text(text)
        refused(tmp_path / name, *words)
    d = json.loads(good)
    d["model"]["merges"][5] = "Ġ"
    refused(json_dir(tmp_path, d, "merge"), "merge 5 is not a pair")
    d["model"]["merges"][5] = ["Ġ", "不"]
    refused(json_dir(tmp_path, d, "merge2"), "not in the vocabulary")
    d = json.loads(good)
    d["model"]["vocab"]["日本"] = 1500
    refused(json_dir(tmp_path, d, "alphabet"), "byte-level BPE's alphabet")


def test_slow_gpt2_files_are_checked(gpt2_exact, tmp_path):
    directory = tmp_path / "slow"
    directory.mkdir()
    (directory / "vocab.json").write_text((gpt2_exact["slow"] / "vocab.json").read_text())
    (directory / "merges.txt").write_bytes(b"#version: 0.2\n\xff\xfe\n")
    refused(directory, "not UTF-8")
    (directory / "merges.txt").write_text("#version: 0.2\nĠ t x\n")
    refused(directory, "merge 0 is not a pair")
    (directory / "merges.txt").write_text((gpt2_exact["slow"] / "merges.txt").read_text())
    (directory / "tokenizer_config.json").write_text(
        '{"added_tokens_decoder": {"50257": {"content": "<x>", "special": false}}}'
    )
    refused(directory, "<x>", "not special")
