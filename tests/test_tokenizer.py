"""Tests for minigpt.tokenizer and minigpt.tokenizer.bpe: round trips, BPE rank integrity,
tiktoken loading (offline cache and the offline-failure path), and tokenizer.json
save/load with validation of corrupt files."""

import base64
import json
from pathlib import Path

import pytest
import tiktoken
import tiktoken.load
import tiktoken.registry
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.errors import ConfigError, MinigptError, TokenizerError
from minigpt.generation.text import Utf8Stream
from minigpt.tokenizer.bpe import train_bpe
from minigpt.tokenizer.encodings import (
    ENDOFTEXT,
    GPT2_PATTERN_STDLIB,
    BPETokenizer,
    CharTokenizer,
    Tokenizer,
)
from minigpt.tokenizer.files import (
    load_tokenizer,
    save_tokenizer,
    tokenizer_from_json,
    train_tokenizer,
)

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "shakespeare.txt"
KOREAN = "안녕하세요, 세계! 한국어 텍스트도 잘 됩니다. 토크나이저 테스트 🙂🚀 👩‍💻 café naïve\n"


@pytest.fixture(scope="module")
def shakespeare() -> str:
    return SHAKESPEARE.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def bpe_small(shakespeare: str) -> Tokenizer:
    """A small BPE trained on some shakespeare plus Korean and emoji."""
    return train_tokenizer("bpe", shakespeare[:50_000] + KOREAN * 20, vocab_size=500)


@pytest.fixture(scope="module")
def bpe_1000(shakespeare: str) -> Tokenizer:
    return train_tokenizer("bpe", shakespeare[:200_000], vocab_size=1000)


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    return train_tokenizer("gpt2", "")


@pytest.fixture(scope="module")
def char_tok(shakespeare: str) -> Tokenizer:
    return train_tokenizer("char", shakespeare[:20_000] + KOREAN)


# --- round trips -------------------------------------------------------------------------


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_bpe_round_trip(bpe_small: Tokenizer, s: str) -> None:
    assert bpe_small.decode(bpe_small.encode(s)) == s


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_gpt2_round_trip(gpt2: Tokenizer, s: str) -> None:
    assert gpt2.decode(gpt2.encode(s)) == s


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_char_round_trip(char_tok: Tokenizer, data: st.DataObject) -> None:
    alphabet = "".join(char_tok.decode(range(char_tok.vocab_size)))
    s = data.draw(st.text(alphabet=alphabet))
    ids = char_tok.encode(s)
    assert len(ids) == len(s)
    assert char_tok.decode(ids) == s


@settings(max_examples=100, deadline=None)
@given(st.text(), st.integers(min_value=1, max_value=5))
def test_utf8_stream_matches_decode(bpe_small: Tokenizer, s: str, chunk: int) -> None:
    ids = bpe_small.encode(s)
    stream = Utf8Stream(bpe_small)
    pieces = [stream.feed(ids[i : i + chunk]) for i in range(0, len(ids), chunk)]
    assert all("\ufffd" not in p for p in pieces) or "\ufffd" in s
    assert "".join(pieces) + stream.flush() == s


# --- char --------------------------------------------------------------------------------


def test_char_korean() -> None:
    tok = train_tokenizer("char", KOREAN)
    assert tok.kind == "char"
    assert tok.eot_id is None
    assert tok.vocab_size == len(set(KOREAN))
    assert tok.decode(tok.encode("안녕 세계")) == "안녕 세계"
    assert tok.token_bytes(tok.encode("안")[0]) == "안".encode()
    assert sum(tok.token_byte_lengths()[i] for i in tok.encode(KOREAN)) == len(KOREAN.encode())


def test_char_unknown_character() -> None:
    tok = train_tokenizer("char", "hello world")
    with pytest.raises(TokenizerError) as exc:
        tok.encode("hello 세계")
    msg = str(exc.value)
    assert "'세'" in msg and "U+C138" in msg and "position 6" in msg and "training text" in msg


def test_char_vocab_sorted_and_fast_path(shakespeare: str) -> None:
    tok = train_tokenizer("char", shakespeare)
    assert tok.vocab_size == 65
    ids = tok.encode(shakespeare)
    assert len(ids) == len(shakespeare) and max(ids) == 64
    assert tok.decode(ids[:1000]) == shakespeare[:1000]


def test_char_rejects_bad_ids() -> None:
    tok = train_tokenizer("char", "abc")
    for bad in ([3], [-1], ["a"]):
        with pytest.raises(TokenizerError):
            tok.decode(bad)


def test_char_rejects_vocab_size_and_empty_text() -> None:
    with pytest.raises(ConfigError):
        train_tokenizer("char", "abc", vocab_size=100)
    assert train_tokenizer("char", "abc", vocab_size=3).vocab_size == 3
    with pytest.raises(TokenizerError):
        train_tokenizer("char", "")


# --- bpe ---------------------------------------------------------------------------------


def test_bpe_vocab_and_rank_integrity(bpe_1000: Tokenizer) -> None:
    assert bpe_1000.kind == "bpe"
    assert bpe_1000.vocab_size == 1000
    assert bpe_1000.eot_id == bpe_1000.vocab_size - 1
    ranks = bpe_1000.to_json()["ranks"]
    tokens = [base64.b64decode(r) for r in ranks]
    assert len(tokens) == len(set(tokens)) == 999
    assert tokens[:256] == [bytes([i]) for i in range(256)]
    lengths = bpe_1000.token_byte_lengths()
    assert lengths[-1] == 0 and lengths[:999] == [len(t) for t in tokens]
    assert bpe_1000.token_bytes(bpe_1000.eot_id) == ENDOFTEXT.encode()


def test_bpe_merges_build_on_earlier_tokens(shakespeare: str) -> None:
    ranks = train_bpe(shakespeare[:100_000], 600, GPT2_PATTERN_STDLIB)
    assert sorted(ranks.values()) == list(range(len(ranks)))
    for tok, rank in ranks.items():
        if rank >= 256:  # some split into two strictly earlier tokens made it
            assert any(
                ranks.get(tok[:i], rank) < rank and ranks.get(tok[i:], rank) < rank
                for i in range(1, len(tok))
            )


def test_bpe_compresses(bpe_1000: Tokenizer, shakespeare: str) -> None:
    text = shakespeare[:200_000]
    assert len(bpe_1000.encode(text)) < len(text.encode()) / 2


def test_bpe_endoftext_literal_is_text(bpe_1000: Tokenizer) -> None:
    s = f"To be{ENDOFTEXT}or not"
    ids = bpe_1000.encode(s)
    assert bpe_1000.eot_id not in ids
    assert bpe_1000.decode(ids) == s
    assert bpe_1000.decode([bpe_1000.eot_id]) == ENDOFTEXT


def test_bpe_deterministic(shakespeare: str) -> None:
    text = shakespeare[:100_000]
    a = train_bpe(text, 700, GPT2_PATTERN_STDLIB)
    b = train_bpe(text, 700, GPT2_PATTERN_STDLIB)
    assert list(a.items()) == list(b.items())


def test_bpe_stops_when_merges_run_out() -> None:
    tok = train_tokenizer("bpe", "abab abab", vocab_size=5000)
    assert 258 <= tok.vocab_size < 5000
    assert tok.decode(tok.encode("abab abab")) == "abab abab"


def test_bpe_ranks_unique_on_repetitive_text() -> None:
    # Overlapping pieces ("ab"+"c" vs "a"+"bc") must never give one byte string two ranks.
    ranks = train_bpe("abc abc abc xbc xbc xbc xbc ab ab ab ab ab " * 3, 400, r"\S+|\s+")
    assert len(set(ranks)) == len(ranks)
    assert sorted(ranks.values()) == list(range(len(ranks)))


@pytest.mark.parametrize("vocab_size", [None, 0, 257, 10**9, True])
def test_bpe_bad_vocab_size(vocab_size: object) -> None:
    with pytest.raises(MinigptError, match="vocab_size"):
        train_tokenizer("bpe", "some text", vocab_size=vocab_size)  # type: ignore[arg-type]


def test_bpe_rejects_bad_ids(bpe_small: Tokenizer) -> None:
    for bad in ([bpe_small.vocab_size], [-1], [2**40], ["a"]):
        with pytest.raises(TokenizerError):
            bpe_small.decode(bad)
    with pytest.raises(TokenizerError):
        bpe_small.token_bytes(10**6)


def test_bpe_rank_validation() -> None:
    good = {bytes([i]): i for i in range(256)}
    assert BPETokenizer(good).vocab_size == 257
    with pytest.raises(TokenizerError, match="single byte"):
        BPETokenizer({k: v for k, v in good.items() if v != 7} | {b"ab": 7})
    with pytest.raises(TokenizerError, match="ranks"):
        BPETokenizer(good | {b"ab": 300})
    with pytest.raises(TokenizerError):
        BPETokenizer(good | {b"ab": 256}, pattern="(")


# --- tiktoken ------------------------------------------------------------------------------


def test_gpt2_known_ids(gpt2: Tokenizer) -> None:
    assert gpt2.kind == "tiktoken"
    assert gpt2.encode("hello world") == [31373, 995]
    assert gpt2.vocab_size == 50257 and gpt2.eot_id == 50256
    assert gpt2.spec() == {"kind": "tiktoken", "name": "gpt2", "vocab_size": 50257}
    assert gpt2.encode(ENDOFTEXT) != [50256]
    lengths = gpt2.token_byte_lengths()
    assert len(lengths) == 50257 and lengths[50256] == 0 and lengths[31373] == len(b"hello")


def test_unknown_tiktoken_name() -> None:
    with pytest.raises(TokenizerError) as exc:
        train_tokenizer("gpt7", "text")
    assert "cl100k_base" in str(exc.value) and "'char'" in str(exc.value)


def _fresh_offline_tiktoken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """An empty cache dir, and no encoding already loaded in this process."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(tiktoken.registry, "ENCODINGS", {})


def test_tiktoken_offline_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fresh_offline_tiktoken(monkeypatch, tmp_path)

    def no_network(blobpath: str) -> bytes:
        raise ConnectionError(f"network is unreachable: {blobpath}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    with pytest.raises(TokenizerError) as exc:
        train_tokenizer("gpt2", "")
    msg = str(exc.value)
    assert "could not be downloaded" in msg and "TIKTOKEN_CACHE_DIR" in msg


def test_tiktoken_offline_error_real_request(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The real download path, failing at once on a refused proxy connection."""
    _fresh_offline_tiktoken(monkeypatch, tmp_path)
    for var in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY"):
        monkeypatch.setenv(var, "http://127.0.0.1:9")
    for var in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(TokenizerError, match="could not be downloaded"):
        train_tokenizer("r50k_base", "")


# --- save / load ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["char_tok", "bpe_small", "gpt2"])
def test_save_load_round_trip(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    tok: Tokenizer = request.getfixturevalue(name)
    path = tmp_path / "tokenizer.json"
    save_tokenizer(tok, path)
    loaded = load_tokenizer(path, expected_vocab_size=tok.vocab_size)
    assert loaded.spec() == tok.spec()
    assert loaded.to_json() == tok.to_json()
    assert len(json.dumps(tok.spec())) < 200
    text = "First Citizen: 안녕 🙂"
    assert loaded.encode(text) == tok.encode(text)
    assert [p.name for p in tmp_path.iterdir()] == ["tokenizer.json"]  # no temp files left


def test_spec_distinguishes_tokenizers(bpe_small: Tokenizer, bpe_1000: Tokenizer) -> None:
    assert bpe_small.spec() != bpe_1000.spec()
    assert set(bpe_small.spec()) == {"kind", "vocab_size", "sha256"}


def test_expected_vocab_size(bpe_small: Tokenizer, tmp_path: Path) -> None:
    path = tmp_path / "tok.json"
    save_tokenizer(bpe_small, path)
    assert load_tokenizer(path, expected_vocab_size=bpe_small.vocab_size + 12).vocab_size == 500
    with pytest.raises(TokenizerError, match="don't match"):
        load_tokenizer(path, expected_vocab_size=bpe_small.vocab_size - 1)


def _bpe_json(**changes: object) -> dict:
    d = BPETokenizer({bytes([i]): i for i in range(256)} | {b"ab": 256}).to_json()
    d.update(changes)
    return d


_B64_BYTES = [base64.b64encode(bytes([i])).decode() for i in range(256)]

CORRUPT = {
    "not_json": b"{ this is not json",
    "not_utf8": b"\xff\xfe{}",
    "list": b"[1, 2, 3]",
    "no_kind": json.dumps({"version": 1}).encode(),
    "wrong_kind": json.dumps(_bpe_json(kind="wordpiece")).encode(),
    "kind_not_str": json.dumps(_bpe_json(kind=3)).encode(),
    "bad_version": json.dumps(_bpe_json(version=10**30)).encode(),
    "bool_version": json.dumps(_bpe_json(version=True)).encode(),
    "bad_base64": json.dumps(_bpe_json(ranks=_B64_BYTES + ["not base64!"])).encode(),
    "rank_not_str": json.dumps(_bpe_json(ranks=_B64_BYTES + [17])).encode(),
    "missing_bytes": json.dumps(_bpe_json(ranks=_B64_BYTES[1:] + ["YWI="])).encode(),
    "duplicate_ranks": json.dumps(_bpe_json(ranks=_B64_BYTES + ["YWI=", "YWI="])).encode(),
    "empty_token": json.dumps(_bpe_json(ranks=_B64_BYTES + [""])).encode(),
    "ranks_not_list": json.dumps(_bpe_json(ranks={"a": 1})).encode(),
    "negative_special": json.dumps(_bpe_json(special_tokens={ENDOFTEXT: -1})).encode(),
    "huge_special": json.dumps(_bpe_json(special_tokens={ENDOFTEXT: 10**30})).encode(),
    "huge_vocab_size": json.dumps(_bpe_json(vocab_size=10**30)).encode(),
    "float_vocab_size": json.dumps(_bpe_json(vocab_size=258.0)).encode(),
    "bad_pattern": json.dumps(_bpe_json(pattern="(")).encode(),
    "char_not_sorted": json.dumps(
        {"kind": "char", "version": 1, "vocab_size": 2, "chars": ["b", "a"]}
    ).encode(),
    "char_multi": json.dumps(
        {"kind": "char", "version": 1, "vocab_size": 2, "chars": ["a", "bc"]}
    ).encode(),
    "char_empty": json.dumps({"kind": "char", "version": 1, "vocab_size": 0, "chars": []}).encode(),
    "tiktoken_unknown": json.dumps(
        {"kind": "tiktoken", "version": 1, "name": "nope", "vocab_size": 5}
    ).encode(),
    "tiktoken_negative": json.dumps(
        {"kind": "tiktoken", "version": 1, "name": "gpt2", "vocab_size": -1}
    ).encode(),
    "deep": b"[" * 100_000 + b"]" * 100_000,
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_corrupt_file(case: str, tmp_path: Path) -> None:
    path = tmp_path / f"{case}.json"
    path.write_bytes(CORRUPT[case])
    with pytest.raises(TokenizerError) as exc:
        load_tokenizer(path)
    assert path.name in str(exc.value)


def test_valid_reference_json_loads(tmp_path: Path) -> None:
    """The base of the corrupt cases is itself valid, so each case tests one fault."""
    path = tmp_path / "ok.json"
    path.write_text(json.dumps(_bpe_json()))
    assert load_tokenizer(path).vocab_size == 258


def test_missing_and_oversized_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(TokenizerError, match="missing.json"):
        load_tokenizer(tmp_path / "missing.json")
    with pytest.raises(TokenizerError, match=tmp_path.name):
        load_tokenizer(tmp_path)  # a directory
    monkeypatch.setattr("minigpt.tokenizer.files.MAX_TOKENIZER_FILE_BYTES", 10)
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"kind": "char", "padding": "x" * 100}))
    with pytest.raises(TokenizerError, match="big.json.*larger"):
        load_tokenizer(big)


def test_from_json_rejects_non_dict() -> None:
    with pytest.raises(TokenizerError):
        tokenizer_from_json([])  # type: ignore[arg-type]


def test_save_into_missing_dir(char_tok: Tokenizer, tmp_path: Path) -> None:
    with pytest.raises(TokenizerError, match="tokenizer.json"):
        save_tokenizer(char_tok, tmp_path / "nope" / "tokenizer.json")


def test_save_overwrites_atomically(
    char_tok: Tokenizer, bpe_small: Tokenizer, tmp_path: Path
) -> None:
    path = tmp_path / "tokenizer.json"
    save_tokenizer(char_tok, path)
    save_tokenizer(bpe_small, path)
    assert load_tokenizer(path).spec() == bpe_small.spec()


def test_char_instance_is_tokenizer() -> None:
    assert isinstance(CharTokenizer(["a"]), Tokenizer)
