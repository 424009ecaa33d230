"""The command line as a user meets it: a whole tokenize -> train -> sample session, and
every user error ending in one clear line on stderr, a non-zero exit, no traceback."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from minigpt.cli import main
from tests.conftest import SHAKESPEARE

TINY_TRAIN = ["--preset", "tiny", "--max-iters", "20", "--eval-interval", "10", "--batch-size", "8"]


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "120"}
    return subprocess.run(
        [sys.executable, "-m", "minigpt", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def test_tokenize_train_sample_session(tmp_path: Path, small_text: str) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "tiny.txt").write_text(small_text)
    tok = run_cli("tokenize", "data/tiny.txt", cwd=tmp_path)
    assert tok.returncode == 0, tok.stderr
    assert "bytes/token" in tok.stdout and "vocab size" in tok.stdout
    assert (tmp_path / "data" / "tiny-bpe" / "train.bin").is_file()

    trained = run_cli("train", "data/tiny.txt", *TINY_TRAIN, "--run", "t", "--threads", "1",
                      "--schedule", "wsd", "--decay-fraction", "0.5", "--min-lr-ratio", "0",
                      cwd=tmp_path)  # fmt: skip
    assert trained.returncode == 0, trained.stderr
    meta = json.loads((tmp_path / "checkpoints" / "t" / "latest" / "config.json").read_text())
    assert (meta["train"]["decay_fraction"], meta["train"]["min_lr_ratio"]) == (0.5, 0.0)
    assert "bits/byte" in trained.stdout and ", 1 CPU thread," in trained.stdout
    assert (tmp_path / "checkpoints" / "t" / "latest" / "model.safetensors").is_file()
    log = (tmp_path / "checkpoints" / "t" / "metrics.jsonl").read_text()
    start = json.loads(log.splitlines()[0])
    assert start["event"] == "start" and start["threads"] == 1

    args = ("sample", "--max-new-tokens", "40", "--seed", "7", "--prompt", "ROMEO:")
    first, second = run_cli(*args, cwd=tmp_path), run_cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("ROMEO:") and len(first.stdout) > len("ROMEO:") + 10
    assert first.stdout == second.stdout  # same seed, same text
    other = run_cli(*args[:-2], "--prompt", "ROMEO:", "--seed", "8", cwd=tmp_path)
    assert other.stdout != first.stdout
    many = run_cli("sample", "-n", "20", "--num-samples", "3", "--top-k", "5", cwd=tmp_path)
    assert many.returncode == 0 and many.stdout.count("--- sample") == 3
    one_thread = run_cli("sample", "-n", "5", "--threads", "1", "--json", cwd=tmp_path)
    assert one_thread.returncode == 0, one_thread.stderr
    assert json.loads(one_thread.stdout)["threads"] == 1  # what torch computed with
    assert "1 thread)" in one_thread.stderr


def test_tokenize_text_shows_ids(tmp_path: Path) -> None:
    shown = run_cli("tokenize", "--text", "hello world", "--tokenizer", "gpt2", cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "[31373, 995]" in shown.stdout


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    plain = run_cli("train", "missing.txt", cwd=tmp_path)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    debug = run_cli("--debug", "train", "missing.txt", cwd=tmp_path)
    assert debug.returncode == 1 and "Traceback" in debug.stderr


# ---------------------------------------------------------------------------------
# The error matrix, in-process (the same `main` the console script calls).


def write(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


ERROR_CASES = {
    "missing file": (lambda d: ["train", str(d / "nope.txt")], "does not exist"),
    "missing shakespeare": (
        lambda d: ["train", "data/shakespeare.txt"],
        "minigpt download shakespeare",
    ),
    "empty file": (lambda d: ["train", write(d / "e.txt", b"")], "is empty"),
    "binary file": (lambda d: ["train", write(d / "b.txt", b"ab\x00\x01" * 50)], "binary"),
    "not utf-8": (
        lambda d: ["train", write(d / "l.txt", b"na\xefve " * 100)],
        "offset 2.*--encoding",
    ),
    "too short for context": (
        lambda d: ["train", write(d / "s.txt", b"to be or not to be " * 20)],
        "too few",
    ),
    "too short for validation": (
        lambda d: ["train", write(d / "v.txt", b"hi"), "--val-fraction", "0.1"],
        "too short",
    ),
    "n_embd not divisible": (
        lambda d: ["train", str(SHAKESPEARE), "--n-embd", "100", "--n-head", "3"],
        "divisible",
    ),
    "bad time budget": (lambda d: ["train", str(SHAKESPEARE), "--time", "soon"], "duration"),
    "bad position kind": (lambda d: ["train", str(SHAKESPEARE), "--pos", "alibi"], "--pos 'alibi'"),
    "negative temperature": (lambda d: ["sample", "--temperature", "-1"], "temperature"),
    "nan temperature": (lambda d: ["sample", "--temperature", "nan"], "finite"),
    "nan top-p": (lambda d: ["sample", "--top-p", "nan"], "finite"),
    "negative token count": (lambda d: ["sample", "--max-new-tokens", "-5"], "max_new_tokens"),
    "not a checkpoint": (lambda d: ["sample", "--checkpoint", str(d)], "not a minigpt checkpoint"),
    "no checkpoint at all": (lambda d: ["sample"], "no checkpoint under checkpoints"),
    "unknown option": (lambda d: ["sample", "--temprature", "1"], "No such option"),
    "not a number": (
        lambda d: ["sample", "--temperature", "hot"],
        "Invalid value for '--temperature'",
    ),
    "zero threads": (lambda d: ["sample", "--threads", "0"], "--threads must be from 1 "),
    "negative threads": (lambda d: ["chat", "--threads", "-1"], "--threads must be from 1 "),
    "zero train threads": (
        lambda d: ["train", str(SHAKESPEARE), "--threads", "0"],
        "--threads must be from 1 ",
    ),
    "unknown corpus": (lambda d: ["download", "wikipedia"], "unknown corpus"),
    "bad tokenizer": (lambda d: ["tokenize", "--text", "hi", "-t", "nope"], "unknown tokenizer"),
}


@pytest.mark.parametrize("case", list(ERROR_CASES))
def test_user_errors_are_one_clear_line(
    case: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINIGPT_DEBUG", raising=False)
    make_args, expected = ERROR_CASES[case]
    code = main(make_args(tmp_path))
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err
    assert re.search(expected, lines[0]), lines[0]
    assert not (tmp_path / "checkpoints").exists() or not any((tmp_path / "checkpoints").iterdir())


def test_a_failed_train_keeps_the_existing_run(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("t.txt").write_text(small_text)
    assert main(["train", "t.txt", *TINY_TRAIN, "--run", "mine"]) == 0
    run = tmp_path / "checkpoints" / "mine"
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    assert main(["train", "t.txt", *TINY_TRAIN, "--run", "mine"]) == 1
    assert "already exists" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_data_options_do_not_apply_to_a_dataset_dir(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("t.txt").write_text(small_text)
    assert main(["tokenize", "t.txt", "-t", "char", "--out", "ds"]) == 0
    capsys.readouterr()
    assert main(["train", "ds", "--tokenizer", "gpt2", *TINY_TRAIN]) == 1
    assert "dataset directory, already tokenized" in capsys.readouterr().err
    assert main(["tokenize", "t.txt", "-t", "char", "--out", "ds"]) == 1
    assert "--force" in capsys.readouterr().err
