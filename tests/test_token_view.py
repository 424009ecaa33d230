"""How tokens read and show: partial characters as bytes (never U+FFFD), and
`minigpt tokenize --text`'s token boundaries in colour terminals (a real pty), with
NO_COLOR or --no-color, and in a pipe."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pexpect
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rich.color import Color, ColorSystem
from rich.style import Style

from minigpt.cli.tokens import TOKEN_COLOURS
from minigpt.tokenizer.encodings import TiktokenTokenizer, Tokenizer
from minigpt.tokenizer.pieces import Piece, read_chunks, readable, token_pieces

SGR = re.compile(r"\x1b\[([0-9;]*)m")
TEXT = "hello world, how are you"
TOKENS = ["hello", " world", ",", " how", " are", " you"]  # gpt2's split of TEXT


@pytest.fixture(scope="module")
def gpt2() -> Tokenizer:
    return TiktokenTokenizer("gpt2")


def token_bytes_again(piece: Piece) -> bytes:
    """The bytes a piece says its token holds: its text, its <XX> bytes."""
    out = b""
    for part in piece.parts:
        if part.kind == "text":
            out += part.text.encode()
        elif part.kind == "bytes":
            out += bytes.fromhex(part.text.replace("<", "").replace(">", ""))
    return out


def test_korean_and_emoji_read_as_bytes_then_the_character(gpt2: Tokenizer) -> None:
    pieces = token_pieces(gpt2, gpt2.encode("안녕 🦙 ok"))
    assert [p.text for p in pieces] == [
        "<EC>", "<95>", "<88>→안", "<EB>", "<85>", "<95>→녕",
        " <F0><9F>", "<A6>", "<99>→🦙", " ok",
    ]  # fmt: skip
    assert pieces[2].parts[-1].kind == "completes" and pieces[2].parts[-1].text == "안"


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.sampled_from("ab 안녕얘🦙👍\u200d\n€"), max_size=30))
def test_pieces_hold_exactly_each_tokens_bytes_and_every_character(text: str) -> None:
    tok = TiktokenTokenizer("gpt2")
    ids = tok.encode(text)
    pieces = token_pieces(tok, ids)
    assert all(token_bytes_again(p) == tok.token_bytes(i) for p, i in zip(pieces, ids, strict=True))
    chars = "".join(part.text for p in pieces for part in p.parts if part.kind != "bytes")
    assert chars == text and "\ufffd" not in "".join(p.text for p in pieces)


def test_bytes_that_are_no_character_read_as_bytes() -> None:
    bad, truncated = read_chunks([b"\xff", b"a\xec\x96"])
    assert [p.text for p in bad] == ["<FF>"]
    assert [(p.kind, p.text) for p in truncated] == [("text", "a"), ("bytes", "<EC><96>")]


def test_readable_escapes_what_prints_as_nothing() -> None:
    assert readable("a\n\tb\x1b[2J\u200d é") == "a\\n\\tb\\x1b[2J\\u200d é"


def test_neighbouring_colours_stay_apart_in_256_and_16_colours() -> None:
    for system in (ColorSystem.EIGHT_BIT, ColorSystem.STANDARD):
        shown = [_background(colour).downgrade(system) for colour in TOKEN_COLOURS]
        assert len(set(shown)) == len(shown), system  # all differ, so neighbours do
    assert all(_background(c).number is not None for c in TOKEN_COLOURS)  # palette entries


def _background(style: str) -> Color:
    colour = Style.parse(style).bgcolor
    assert colour is not None
    return colour


# ---------------------------------------------------------------------------------
# `minigpt tokenize --text` on a real terminal, and in a pipe.


def terminal_env(**changes: str) -> dict[str, str]:
    drop = ("NO_COLOR", "FORCE_COLOR", "COLORTERM", "TTY_COMPATIBLE", "TTY_INTERACTIVE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return env | {"COLUMNS": "120"} | changes


def on_terminal(env: dict[str, str], *args: str) -> str:
    child = pexpect.spawn(
        sys.executable, ["-m", "minigpt", "tokenize", "--text", TEXT, "-t", "gpt2", *args],
        env=env, encoding="utf-8", timeout=120, dimensions=(24, 120),
    )  # fmt: skip
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return child.before or ""


def backgrounds(shown: str) -> list[tuple[str, str]]:
    """(SGR background, text) for each run of text with a background."""
    runs, background, position = [], "", 0
    for match in [*SGR.finditer(shown), None]:
        end = match.start() if match else len(shown)
        if shown[position:end] and background:
            runs.append((background, shown[position:end]))
        if match:
            background, position = _sgr_background(match.group(1), background), match.end()
    return runs


def _sgr_background(params: str, current: str) -> str:
    codes = params.split(";") if params else ["0"]
    i = 0
    while i < len(codes):
        code = codes[i]
        if code in ("0", "49"):
            current = ""
        elif code == "48":
            step = 3 if codes[i + 1] == "5" else 5
            current, i = ";".join(codes[i : i + step]), i + step - 1
        elif code == "38":
            i += 2 if codes[i + 1] == "5" else 4
        elif re.fullmatch(r"4[0-7]|10[0-7]", code):
            current = code
        i += 1
    return current


@pytest.mark.parametrize(
    "term, code", [("xterm-256color", r"48;5;\d+"), ("xterm", r"4[0-7]|10[0-7]")]
)
def test_neighbouring_tokens_get_different_backgrounds(term: str, code: str) -> None:
    runs = backgrounds(on_terminal(terminal_env(TERM=term)))
    assert [text for _, text in runs] == TOKENS, runs
    assert all(re.fullmatch(code, background) for background, _ in runs), runs
    assert all(a[0] != b[0] for a, b in zip(runs, runs[1:], strict=False)), runs


def test_without_colour_a_bar_marks_each_boundary() -> None:
    expected = "|" + "|".join(TOKENS) + "|"
    for shown in (
        on_terminal(terminal_env(TERM="xterm-256color", NO_COLOR="1")),
        on_terminal(terminal_env(TERM="xterm-256color"), "--no-color"),
    ):
        assert expected in SGR.sub("", shown) and not backgrounds(shown)
    piped = subprocess.run(
        [sys.executable, "-m", "minigpt", "tokenize", "--text", "a\nb 안", "-t", "gpt2"],
        capture_output=True, text=True, env=terminal_env(), timeout=120, check=True,
    )  # fmt: skip
    assert piped.stdout.startswith("|a|\\n|\n|b| <EC>|<95>|<88>→안|\n\n6 tokens"), piped.stdout
