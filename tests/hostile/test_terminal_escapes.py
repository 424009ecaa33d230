"""Model output never drives the user's terminal ("nothing lost" issue, item 19): on a
terminal control characters show as symbols (ESC as ␛); into a pipe they stay data."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest

from minigpt.cli import main
from tests.conftest import SHAKESPEARE

ESCAPES = "\x1b[2J\x1b]0;pwned\x07"


@pytest.fixture(scope="module")
def escape_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A char-level run whose vocabulary holds ESC and BEL (its text was full of them)."""
    root = tmp_path_factory.mktemp("escapes")
    corpus = root / "escapes.txt"
    corpus.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:20_000] + ESCAPES * 200)
    args = ["train", corpus, "--preset", "tiny", "-t", "char", "--max-iters", 2,
            "--eval-interval", 2, "--out", root / "runs", "--run", "r"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    return root / "runs" / "r"


def test_escapes_show_as_symbols_on_a_terminal(escape_run: Path) -> None:
    child = pexpect.spawn(
        sys.executable, ["-m", "minigpt", "sample", "-c", str(escape_run), "-p", ESCAPES,
                         "-n", "20", "--temperature", "0"],
        encoding="utf-8", timeout=120,
    )  # fmt: skip
    child.expect(pexpect.EOF)
    shown = child.before or ""
    assert "\x1b[2J" not in shown and "\x1b]0;" not in shown and "\x07" not in shown
    assert "␛[2J␛]0;pwned␇" in shown


def test_escapes_stay_data_in_a_pipe(escape_run: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "minigpt", "sample", "-c", str(escape_run), "-p", ESCAPES,
         "-n", "5", "--temperature", "0"],
        capture_output=True, text=True, timeout=120, check=True,
    )  # fmt: skip
    assert done.stdout.startswith(ESCAPES)


def test_the_token_view_shows_escapes_as_text_on_a_terminal() -> None:
    """`tokenize --text` colours each token; the text's own ESC and BEL show as \\x1b."""
    child = pexpect.spawn(
        sys.executable, ["-m", "minigpt", "tokenize", "--text", ESCAPES, "-t", "gpt2"],
        env={**os.environ, "TERM": "xterm-256color"}, encoding="utf-8", timeout=120,
    )  # fmt: skip
    child.expect(pexpect.EOF)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", child.before or "")  # rich's own colours
    assert "\x1b" not in shown and "\x07" not in shown
    assert "\\x1b[2J\\x1b]0;pwned\\x07" in shown


def test_raw_writes_escapes_as_they_are_on_a_terminal(escape_run: Path) -> None:
    """The explicit option: --raw leaves the text alone even on a terminal."""
    child = pexpect.spawn(
        sys.executable, ["-m", "minigpt", "sample", "-c", str(escape_run), "-p", ESCAPES,
                         "-n", "5", "--temperature", "0", "--raw"],
        encoding="utf-8", timeout=120,
    )  # fmt: skip
    child.expect(pexpect.EOF)
    assert (child.before or "").startswith(ESCAPES)


@pytest.fixture(scope="module")
def esc_heavy_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained on text that is almost all ESC: its greedy replies are ESCs."""
    root = tmp_path_factory.mktemp("esc-heavy")
    corpus = root / "esc.txt"
    corpus.write_text(("\x1b" * 60 + "pwned\n") * 400)
    args = ["train", corpus, "--preset", "tiny", "-t", "char", "--max-iters", 30,
            "--eval-interval", 30, "--out", root / "runs", "--run", "r"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    return root / "runs" / "r"


@pytest.mark.parametrize("raw", [False, True])
def test_chat_replies_show_escapes_as_symbols_on_a_terminal(esc_heavy_run: Path, raw: bool) -> None:
    """Item 19 in the REPL, through a real pseudo-terminal."""
    args = ["-m", "minigpt", "chat", "-c", str(esc_heavy_run), "-n", "12", "--temperature", "0",
            "--no-stop", *(["--raw"] if raw else [])]  # fmt: skip
    child = pexpect.spawn(sys.executable, args, encoding="utf-8", timeout=120)
    child.expect("you> ")
    child.sendline("pwned")
    child.expect("you> ")  # the reply, then the next prompt
    reply = child.before or ""
    child.sendeof()
    child.expect(pexpect.EOF)
    if raw:
        assert "\x1b\x1b\x1b" in reply
    else:  # the terminal's own styling may hold ESC, but never three in a row
        assert "␛␛␛" in reply and "\x1b\x1b" not in reply
