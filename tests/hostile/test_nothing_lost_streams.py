"""The standard streams and Ctrl-C ("nothing lost" issue, items 24 and 25, first part).

Item 24: a closed stdout or stdin (`>&-`, `<&-`), PYTHONIOENCODING=ascii or latin-1,
a C locale without UTF-8 mode, and bytes that are not UTF-8 in a prompt each end in
one clear line or just work, by one rule in every command (`minigpt.cli.terminal`).
Item 25, first part: a Ctrl-C while torch is still loading printed a 30-line traceback
(or aborted the process from C++ code) instead of ending quietly with exit code 130.

Closed descriptors, the environment and raw argument bytes need a real process:
those cases run `python -m minigpt` through bash, as a user would.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minigpt.cli import main
from minigpt.errors import EXIT_INTERRUPTED
from tests.hostile.conftest import Outcome

ROOT = Path(__file__).resolve().parents[2]
C_LOCALE = {"LC_ALL": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0"}
NOT_UTF8 = b"ab\xff"  # a byte that never occurs in UTF-8


def environment(**extra: str) -> dict[str, str]:
    """This interpreter's environment with the worktree first on the path, and no
    encoding settings but those given."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONIOENCODING", "PYTHONUTF8")}
    return {**base, "PYTHONPATH": str(ROOT), **extra}


def minigpt(
    *args: object, redirect: str = "", env: dict[str, str] | None = None, input: bytes = b""
) -> subprocess.CompletedProcess[bytes]:
    """`python -m minigpt ARGS REDIRECT` in bash (">&-" closes stdout); bytes arguments
    reach the process as they are."""
    command = [
        a if isinstance(a, bytes) else str(a) for a in (sys.executable, "-m", "minigpt", *args)
    ]
    return subprocess.run(
        ["bash", "-c", f'exec "$@" {redirect}', "bash", *command], input=input,
        capture_output=True, env=env or environment(), timeout=300,
    )  # fmt: skip


def outcome(done: subprocess.CompletedProcess[bytes]) -> Outcome:
    text = [s.decode("utf-8", "backslashreplace") for s in (done.stdout, done.stderr)]
    return Outcome(done.returncode, *text)


@pytest.fixture(scope="module")
def bpe_run(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    """A run with minigpt's byte-level BPE tokenizer, which encodes any text."""
    out = tmp_path_factory.mktemp("bpe-runs")
    args = ["train", corpus, "--preset", "tiny", "-t", "bpe", "--vocab-size", 300,
            "--max-iters", 2, "--eval-interval", 2, "--out", out, "--run", "b"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    return out / "b"


# -- closed streams ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["sample", "tokenize", "chat", "train"])
def test_a_closed_stdout_is_refused_by_every_command(
    command: str, trained_run: Path, corpus: Path, tmp_path: Path
) -> None:
    """`sample >&-` was a traceback; tokenize, chat and train ran writing nowhere."""
    args = {
        "sample": ["sample", "-c", trained_run, "-n", 3],
        "tokenize": ["tokenize", "--text", "to be", "-t", "char"],
        "chat": ["chat", "-c", trained_run, "-n", 3],
        "train": ["train", corpus, "--preset", "tiny", "-t", "char", "--max-iters", 2,
                  "--out", tmp_path],
    }[command]  # fmt: skip
    result = outcome(minigpt(*args, redirect=">&-", input=b"hello\n"))
    assert result.one_clear_line, result.err
    assert result.err.startswith("error: stdout is closed") and "/dev/null" in result.err
    assert not any(tmp_path.iterdir())  # train started nothing


def test_a_closed_stdin_is_refused_by_chat_only(trained_run: Path) -> None:
    """`chat <&-` was a traceback; sample does not read stdin and is not bothered."""
    refused = outcome(minigpt("chat", "-c", trained_run, redirect="<&-"))
    assert refused.one_clear_line and refused.err.startswith("error: stdin is closed")
    sampled = outcome(minigpt("sample", "-c", trained_run, "-p", "to be", "-n", 3, redirect="<&-"))
    assert sampled.code == 0 and sampled.out.startswith("to be")


def test_a_closed_stderr_leaves_the_results_and_the_exit_code(trained_run: Path) -> None:
    done = minigpt("sample", "-c", trained_run, "-p", "to be", "-n", 3, redirect="2>&-")
    assert done.returncode == 0 and done.stdout.startswith(b"to be")
    refused = minigpt("sample", "-c", trained_run, "-p", NOT_UTF8, redirect="2>&-")
    assert refused.returncode == 1 and refused.stdout == b""


# -- encodings ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "typed", "shown"),
    [
        (("sample", "-c", "{bpe}", "-n", 3, "-p", "café —"), b"", b"caf\\xe9 \\u2014"),
        (("tokenize", "-t", "char", "--text", "café"), b"", b"|c|a|f|\\xe9|"),  # | between tokens
        (("chat", "-c", "{bpe}", "-n", 3), "café —\n".encode(), b""),
    ],
    ids=["sample", "tokenize", "chat"],
)
def test_an_ascii_stdout_gets_escapes_not_a_traceback(
    args: tuple[object, ...], typed: bytes, shown: bytes, bpe_run: Path
) -> None:
    """PYTHONIOENCODING=ascii: tracebacks in sample and tokenize (writing the text) and
    in chat (reading the turn)."""
    command = [bpe_run if a == "{bpe}" else a for a in args]
    done = minigpt(*command, env=environment(PYTHONIOENCODING="ascii"), input=typed)
    assert done.returncode == 0 and b"Traceback" not in done.stderr, done.stderr
    assert done.stdout.isascii() and shown in done.stdout


def test_json_stays_json_in_a_latin1_stdout(bpe_run: Path) -> None:
    """PYTHONIOENCODING=latin-1: `sample --json` with an em dash was a traceback."""
    env = environment(PYTHONIOENCODING="latin-1")
    done = minigpt("sample", "-c", bpe_run, "-p", "café —", "-n", 3, "--json", env=env)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.decode("latin-1"))["prompt"] == "café —"


def test_a_c_locale_still_takes_utf8_arguments(trained_run: Path, bpe_run: Path) -> None:
    """LC_ALL=C without UTF-8 mode: '\\udce2' not in vocabulary, for an em dash."""
    env = environment(**C_LOCALE)
    refused = outcome(minigpt("sample", "-c", trained_run, "-p", "to be —", env=env))
    assert refused.one_clear_line and "U+2014" in refused.err and "U+DC" not in refused.err
    done = minigpt("sample", "-c", bpe_run, "-p", "café —", "-n", 3, env=env)
    assert done.returncode == 0 and done.stdout.startswith(b"caf\\xe9 \\u2014"), done.stderr


# -- text that is not UTF-8 ------------------------------------------------------------


def test_a_prompt_that_is_not_utf8_is_refused(bpe_run: Path) -> None:
    """Raw bytes in -p became U+FFFD with BPE models, and --json wrote invalid UTF-8."""
    done = outcome(minigpt("sample", "-c", bpe_run, "-p", NOT_UTF8, "--json"))
    assert done.one_clear_line and done.out == "", done.err
    assert done.err.strip() == (
        "error: the prompt is not UTF-8 text (byte 0xff at offset 2); give it as UTF-8"
    )


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (("sample", "-c", "{char}", "-p", "{bad}"), "the prompt"),
        (("sample", "-c", "{bpe}", "--stop", "{bad}"), "--stop"),
        (("chat", "-c", "{bpe}", "--pin", "{bad}"), "--pin"),
        (("tokenize", "-t", "char", "--text", "{bad}"), "--text"),
    ],
    ids=["prompt", "stop", "pin", "text"],
)
def test_every_text_argument_that_is_not_utf8_is_refused_alike(
    cli, args: tuple[str, ...], named: str, trained_run: Path, bpe_run: Path
) -> None:
    """The same bytes, as Python hands them over (os.fsdecode): a misleading
    vocabulary error, silently accepted, or refused in other words by each command."""
    given = {"{char}": str(trained_run), "{bpe}": str(bpe_run), "{bad}": os.fsdecode(NOT_UTF8)}
    result = cli(*(given.get(a, a) for a in args))
    assert result.one_clear_line, result.err
    assert result.err.startswith(f"error: {named} is not UTF-8 text (byte 0xff at offset 2)")


def test_a_chat_line_that_is_not_utf8_is_refused_and_the_chat_goes_on(bpe_run: Path) -> None:
    done = outcome(minigpt("chat", "-c", bpe_run, "-n", 3, input=NOT_UTF8 + b"\nhello\n"))
    assert done.code == 0 and "Traceback" not in done.err
    assert "error: the line is not UTF-8 text (byte 0xff at offset 2)" in done.err
    assert done.out.strip()  # the reply to "hello"


# -- Ctrl-C while loading -----------------------------------------------------------


def loading_torch(process: subprocess.Popen[bytes]) -> bool:
    """True once torch's libraries are mapped into the process (it is loading them)."""
    try:
        return "libtorch" in Path(f"/proc/{process.pid}/maps").read_text()
    except OSError:
        return process.poll() is not None  # it ended: nothing more to wait for


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc")
@pytest.mark.parametrize("delay", [0.0, 0.1, 0.3])
def test_ctrl_c_while_loading_ends_quietly(delay: float, trained_run: Path) -> None:
    """Item 25: Ctrl-C in the first half second printed a 30-line KeyboardInterrupt
    traceback, or `terminate called ... KeyboardInterrupt` and an abort."""
    process = subprocess.Popen(
        [sys.executable, "-m", "minigpt", "sample", "-c", str(trained_run), "-n", "100000"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=environment(),
    )  # fmt: skip
    deadline = time.monotonic() + 60
    while not loading_torch(process) and time.monotonic() < deadline:
        time.sleep(0.002)
    time.sleep(delay)
    process.send_signal(signal.SIGINT)
    err = process.communicate(timeout=120)[1].decode()
    assert process.returncode == EXIT_INTERRUPTED, err
    assert "Traceback" not in err and "terminate" not in err
    assert len([line for line in err.splitlines() if line.strip()]) <= 1, err
