"""`minigpt chat`'s newcomer polish, mostly through a real pseudo-terminal: /stats in
plain words that wrap between words, /load restoring the saved settings, keys typed
during a reply neither echoed nor kept, a stopped reply saved as it was shown, the
/probs legend, and the end-of-reply line of piped chat."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pexpect
import pytest
import torch
from rich.console import Console

from minigpt.checkpoint import save_checkpoint
from minigpt.cli.chat_cmd import END_OF_REPLY, Repl
from minigpt.cli.chat_words import stats_text
from minigpt.cli.options import Compute
from minigpt.config import SampleConfig
from minigpt.generation.chat import ChatSession
from minigpt.model import GPT
from minigpt.tokenizer.encodings import CharTokenizer
from tests.conftest import tiny_config

TEXT = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ,.:;!?'\n"  # no digits
PROMPT = "you> "
COLOURS = re.compile(r"\x1b\[[0-9;]*m")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tok = CharTokenizer.from_text(TEXT)
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=tok.vocab_size, block_size=64))
    path = tmp_path_factory.mktemp("ckpt") / "run" / "latest"
    save_checkpoint(path, model, tok, {"step": 0})
    return path


def env(tmp_path: Path, columns: int = 100) -> dict[str, str]:
    return {**os.environ, "HOME": str(tmp_path), "TERM": "xterm", "COLUMNS": str(columns)}


def spawn(checkpoint: Path, tmp_path: Path, *args: str, columns: int = 100) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable, ["-m", "minigpt", "chat", "-c", str(checkpoint), *args],
        env=env(tmp_path, columns), cwd=str(tmp_path), encoding="utf-8", timeout=60,
        dimensions=(24, columns),
    )  # fmt: skip
    child.expect_exact("Ctrl-D to leave")
    child.expect_exact(PROMPT)
    return child


def leave(child: pexpect.spawn) -> None:
    """Ctrl-D at the next prompt, and the end. Sent before the prompt shows, Ctrl-D
    would land while the terminal is between two readline calls (canonical mode) and
    reach readline as a NUL byte, not as the end of input."""
    child.expect_exact(PROMPT)
    child.sendeof()
    child.expect(pexpect.EOF)


def piped(checkpoint: Path, tmp_path: Path, lines: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "minigpt", "chat", "-c", str(checkpoint), *args],
        input=lines, capture_output=True, text=True, env=env(tmp_path), cwd=str(tmp_path),
        timeout=120,
    )  # fmt: skip


def char_session(**config: object) -> ChatSession:
    tok = CharTokenizer.from_text(TEXT)
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=tok.vocab_size, block_size=64)).eval()
    return ChatSession(model, tok, SampleConfig(**({"max_new_tokens": 12} | config)))


def test_stats_is_plain_words_that_wrap_between_words_at_80_columns(
    checkpoint: Path, tmp_path: Path
) -> None:
    child = spawn(checkpoint, tmp_path, "-n", "20", "--no-stop", "--pin", "Once upon a time",
                  columns=80)  # fmt: skip
    child.sendline("Hello there")
    child.expect_exact(PROMPT)
    child.sendline("/stats")
    child.expect_exact("/stats\r\n")
    child.expect_exact(PROMPT)
    shown = COLOURS.sub("", child.before).splitlines()
    child.sendeof()
    assert all(len(line) <= 80 for line in shown), shown
    words = " ".join(line.strip() for line in shown)  # a word broken at the edge would split
    assert re.search(r"The model sees \d+ of its 64-token window: all 2 turns, after "
                     r"16 pinned tokens\.", words), words  # fmt: skip
    assert re.search(r"Last reply: 20 tokens in \d+\.\d s \([\d.]+ tokens/s\); first token "
                     r"after \d+ ms, once the model had read \d+ new context tokens; it "
                     r"reached the token limit\.", words), words  # fmt: skip
    assert "Settings: temperature 0.8, top-k off, top-p off, min-p off, up to 20 tokens a " \
           "reply, seed 1337; no stop string." in words  # fmt: skip
    assert re.search(r"Computing with .*\d threads?\.", words), words


def test_stats_counts_one_token_and_one_turn_in_the_singular() -> None:
    session = char_session(max_new_tokens=1)
    session.transcript.turns.clear()
    assert "no turns yet" in stats_text(session, Compute("default", 1))
    assert "No reply yet." in stats_text(session, Compute("default", 1))
    "".join(c.text for c in session.respond("hi"))
    text = stats_text(session, Compute("default", 1))
    assert "Last reply: 1 token in" in text and not re.search(r"(?<![\d.])1 tokens\b", text)
    assert "up to 1 token a reply" in text and "1 thread." in text


def test_load_restores_the_saved_settings_and_says_so(checkpoint: Path, tmp_path: Path) -> None:
    lines = "Hello\n/temp 0.5\n/topk 7\n/seed 3\n/save c.json\n/temp 1\n/topk off\n"
    lines += "/load c.json\n/stats\n"
    result = piped(checkpoint, tmp_path, lines, "-n", "5", "--stop", "x")
    assert result.returncode == 0, result.stderr
    said = result.stderr.splitlines()
    restored = [line for line in said if line.startswith("restored settings:")]
    assert restored == ["restored settings: temperature 0.5, top-k 7, top-p off, min-p off, "
                        "up to 5 tokens a reply, seed 3"], said  # fmt: skip
    assert "temperature 0.5, top-k 7" in result.stdout  # /stats after the load
    assert "replies stop at 'x'" in result.stdout  # the chat's own stop strings stay


@pytest.mark.parametrize(
    "settings, named",
    [({"temperature": -1.0}, "temperature must be >= 0"), ({"top_k": "many"}, "top_k"),
     ({"warp_drive": 9}, "unknown sampling settings ['warp_drive']"), ([1, 2], "JSON object")],
)  # fmt: skip
def test_load_refuses_bad_saved_settings_in_one_line_and_changes_nothing(
    checkpoint: Path, tmp_path: Path, settings: object, named: str
) -> None:
    session = char_session()
    "".join(c.text for c in session.respond("hi"))
    session.save(tmp_path / "c.json")
    data = json.loads((tmp_path / "c.json").read_text())
    data["settings"] = settings
    (tmp_path / "c.json").write_text(json.dumps(data))
    result = piped(checkpoint, tmp_path, "Hello\n/load c.json\n/stats\n", "-n", "5")
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and named in errors[0] and "c.json" in errors[0], result.stderr
    assert "all 2 turns" in result.stdout and "temperature 0.8" in result.stdout


def test_keys_typed_during_a_reply_are_neither_echoed_nor_kept(
    checkpoint: Path, tmp_path: Path
) -> None:
    """(Not stopped with Ctrl-C: the terminal itself drops typed-ahead keys on Ctrl-C.)"""
    child = spawn(checkpoint, tmp_path, "-n", "200", "--no-stop")
    child.sendline("Tell me a long story")
    child.expect_exact("Tell me a long story\r\n")
    child.expect(r"[a-zA-Z]{2}")  # the reply streams (for a second or more)
    child.send("4242")  # digits: the model's vocabulary has none
    child.expect_exact(PROMPT)
    assert "4242" not in child.before  # the reply as shown
    child.sendline("/save c.json")  # typed-ahead keys would make this "4242/save ..."
    child.expect_exact("saved 2 turns", timeout=20)
    leave(child)
    saved = json.loads((tmp_path / "c.json").read_text())
    assert all("4242" not in turn["text"] for turn in saved["turns"])


def test_a_stopped_reply_is_saved_exactly_as_it_was_shown(checkpoint: Path, tmp_path: Path) -> None:
    child = spawn(checkpoint, tmp_path, "-n", "1000000", "--no-stop", "--temperature", "1.5")
    child.sendline("Tell me a long story")
    child.expect_exact("Tell me a long story\r\n")
    child.expect(r"[a-zA-Z]{2}")
    shown = child.before + child.after
    time.sleep(0.3)
    child.sendintr()
    child.expect_exact("(reply stopped)")
    shown = COLOURS.sub("", shown + child.before).replace("\r\n", "\n")
    child.expect_exact(PROMPT)
    child.sendline("/save c.json")
    child.expect_exact("saved 2 turns")
    leave(child)
    saved = json.loads((tmp_path / "c.json").read_text())["turns"][1]["text"]
    assert shown.endswith("\n") and shown[:-1] == saved  # then the line the stop ends


class SigintOnFlush(io.StringIO):
    """A terminal on which Ctrl-C lands the moment a chunk has been written, before
    rich clears its buffer (where it used to make rich print that chunk twice)."""

    def __init__(self) -> None:
        super().__init__()
        self.flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        if self.flushes == 3:
            os.kill(os.getpid(), signal.SIGINT)


def test_the_terminal_keeps_written_output_when_ctrl_c_comes() -> None:
    """While a reply streams the terminal has NOFLSH: the driver would otherwise drop
    output already written when Ctrl-C arrives (a chunk kept but never seen); leaving
    restores the modes it had."""
    import termios

    from minigpt.cli.reply_terminal import ReplyTerminal

    leader, follower = os.openpty()
    try:
        before = termios.tcgetattr(follower)[3]
        assert not before & termios.NOFLSH
        with ReplyTerminal(follower):
            during = termios.tcgetattr(follower)[3]
            assert during & termios.NOFLSH and not during & termios.ECHO
        assert termios.tcgetattr(follower)[3] == before
    finally:
        os.close(leader)
        os.close(follower)


def test_ctrl_c_while_a_chunk_prints_shows_it_once_and_keeps_it() -> None:
    session = char_session(max_new_tokens=50, stop=())
    repl = Repl(session, interactive=False, compute=Compute("default", 1))
    screen = SigintOnFlush()
    repl.out = Console(file=screen, highlight=False, soft_wrap=True)
    repl.err = Console(file=io.StringIO())
    repl.stream(session.respond("hello"))
    reply = session.transcript.turns[-1].text
    assert session.last.ended == "interrupted" and 0 < len(reply) < 50
    assert screen.getvalue() == reply + "\n" + END_OF_REPLY + "\n"


def test_probs_on_prints_its_legend(checkpoint: Path, tmp_path: Path) -> None:
    result = piped(checkpoint, tmp_path, "/probs on\n/probs off\n")
    assert "probabilities on: green ≥ 0.5, yellow ≥ 0.1, red below" in result.stderr
    assert "probabilities off" in result.stderr


def test_piped_replies_each_end_with_the_end_of_reply_line(
    checkpoint: Path, tmp_path: Path
) -> None:
    result = piped(checkpoint, tmp_path, "one\ntwo\n/regen\n", "-n", "8", "--no-stop")
    assert result.returncode == 0, result.stderr
    replies = result.stdout.split(f"\n{END_OF_REPLY}\n")
    assert len(replies) == 4 and replies[-1] == ""
    assert all(len(r) == 8 for r in replies[:3])  # 8 characters of a char model
    helped = subprocess.run([sys.executable, "-m", "minigpt", "chat", "--help"], env=env(tmp_path),
                            capture_output=True, text=True, timeout=60)  # fmt: skip
    assert END_OF_REPLY in " ".join(helped.stdout.split())
