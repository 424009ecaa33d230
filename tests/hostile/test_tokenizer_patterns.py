"""A stranger's tokenizer.json pattern ("nothing lost" issue, item 18): refused at load
when it cannot be trusted to run, and any failure of the engine is one clear error."""

from __future__ import annotations

import pytest

from minigpt.errors import MinigptError, TokenizerError
from minigpt.tokenizer import BPETokenizer, tokenizer_from_json, train_tokenizer


def with_pattern(pattern: str) -> dict:
    spec = train_tokenizer("bpe", "hello world, hello there. " * 40, 300).to_json()
    return {**spec, "pattern": pattern}


@pytest.mark.parametrize(
    "pattern", [r"(a)\1|\w+|\s+|.", r"(?P<x>a)(?P=x)|.", r"(?<x>a)\k<x>|.", r"(a)\g{1}|."]
)
def test_backreferences_are_refused_at_load(pattern: str) -> None:
    with pytest.raises(TokenizerError, match="backreference"):
        tokenizer_from_json(with_pattern(pattern))


def test_a_pattern_that_cannot_run_is_refused_at_load() -> None:
    with pytest.raises(TokenizerError, match="pattern failed"):
        tokenizer_from_json(with_pattern(r"(a|aa)+(?=b)|."))  # gives up on long runs of a


def test_an_escaped_backslash_is_not_a_backreference() -> None:
    tok = tokenizer_from_json(with_pattern(r"\\1|\w+|\s+|."))
    assert tok.decode(tok.encode("a\\1 b")) == "a\\1 b"


def test_an_engine_failure_while_encoding_is_a_clear_error() -> None:
    tok = tokenizer_from_json(with_pattern(r"(x|xx)+(?=y)|\w+|\s+|."))  # fine on the probes
    assert isinstance(tok, BPETokenizer)
    with pytest.raises(MinigptError, match="pattern failed on this text"):
        tok.encode("x" * 60 + "z")
