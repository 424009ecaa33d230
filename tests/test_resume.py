"""Exact resume and crash safety, through real processes.

The golden test: a run planned for 1000 steps, stopped (by --stop-at, or by Ctrl-C)
and resumed in a new process, gives bit-identical per-step losses and final weights
to the same run left alone, with dropout on. (SIGKILL at random moments:
`test_resume_kill.py`.)
"""

from __future__ import annotations

import json
import os
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minigpt.checkpoint import load_checkpoint, read_snapshot, resolve_snapshot
from minigpt.cli import main
from minigpt.cli.signals import GracefulStop
from minigpt.training.runs import discard_unsaved_run
from tests.conftest import SHAKESPEARE

TINY = [
    "--tokenizer", "char", "--preset", "tiny", "--n-layer", "1", "--n-embd", "16",
    "--block-size", "16", "--batch-size", "4", "--dropout", "0.1", "--log-interval", "1",
    "--sample-every", "0", "--precision", "fp32",
]  # fmt: skip
# fp32 for every run: runs compared bit for bit must compute alike, and `--precision
# auto` decides per run, by measuring (a run that finds the machine busy keeps fp32,
# one that finds it quiet may take bf16 autocast).
PLANNED = ["--max-iters", "1000", "--eval-interval", "250"]
TIMEOUT = 240  # seconds; no process here should come near it


def minigpt(*args: str | Path, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "minigpt", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        **kwargs,
    )


def run_ok(*args: str | Path) -> subprocess.CompletedProcess:
    proc = minigpt(*args)
    out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    return subprocess.CompletedProcess(args, proc.returncode, out, err)


def per_step(run_dir: Path) -> list[tuple]:
    """(step, loss) and (step, val_loss) rows of metrics.jsonl, events left out."""
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("loss"), r.get("val_loss")) for r in rows if "event" not in r]


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "latest" / "model.safetensors"))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    for name in wa:
        assert torch.equal(wa[name], wb[name]), name


def wait_for(run_dir: Path, text: str, proc: subprocess.Popen, count: int = 1) -> None:
    """Wait until metrics.jsonl holds `text` `count` times (or the process ended)."""
    deadline = time.monotonic() + TIMEOUT
    metrics = run_dir / "metrics.jsonl"
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count(text) >= count:
            return
        time.sleep(0.02)
    if proc.poll() is None:
        raise AssertionError(f"the run never logged {text!r}")


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_bytes(SHAKESPEARE.read_bytes()[:30_000])
    return path


@pytest.fixture(scope="module")
def reference(corpus: Path) -> Path:
    """The golden run: 1000 steps, never stopped."""
    out = corpus.parent / "runs"
    run_ok("train", corpus, *TINY, *PLANNED, "--out", out, "--run", "full")
    return out / "full"


def test_stop_at_and_resume_in_a_new_process_is_bit_identical(
    corpus: Path, reference: Path
) -> None:
    out = corpus.parent / "runs"
    first = run_ok("train", corpus, *TINY, *PLANNED, "--out", out, "--run", "paused",
                   "--stop-at", "777")  # fmt: skip
    assert "paused: 777 steps" in first.stdout
    saved = read_snapshot(resolve_snapshot(out / "paused"), train_state=True).train_state
    assert saved is not None and saved.meta["step"] == 777
    second = run_ok("train", corpus, "--out", out, "--run", "paused", "--resume")
    assert "resumed    at step 777" in second.stdout
    run = out / "paused"
    assert per_step(run) == per_step(reference)  # every loss and val loss, bit for bit
    assert_same_weights(run, reference)
    events = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [e["event"] for e in events if "event" in e] == ["start", "stop", "resume"]


def test_ctrl_c_saves_exits_130_and_resumes_bit_identical(corpus: Path, reference: Path) -> None:
    out = corpus.parent / "runs"
    proc = minigpt("train", corpus, *TINY, *PLANNED, "--out", out, "--run", "ctrl-c")
    wait_for(out / "ctrl-c", '"step": 300,', proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, stderr
    assert "SIGINT: stopping after this step" in stdout and "Traceback" not in stderr
    state = read_snapshot(resolve_snapshot(out / "ctrl-c"), train_state=True).train_state.meta
    assert 300 <= state["step"] < 1000
    run_ok("train", corpus, "--out", out, "--resume", out / "ctrl-c")
    assert per_step(out / "ctrl-c") == per_step(reference)
    assert_same_weights(out / "ctrl-c", reference)


# One step of this model takes seconds on one CPU thread: two Ctrl-Cs land inside it.
SLOW = [
    "--tokenizer", "char", "--preset", "tiny", "--n-layer", "4", "--n-embd", "256",
    "--block-size", "256", "--batch-size", "32", "--device", "cpu", "--threads", "1",
    "--max-iters", "100", "--eval-interval", "50",
]  # fmt: skip


def test_a_double_ctrl_c_before_the_first_checkpoint_leaves_no_run(corpus: Path) -> None:
    out = corpus.parent / "unsaved"
    proc = minigpt("train", corpus, *SLOW, "--out", out, "--run", "early")
    wait_for(out / "early", '"event": "start"', proc)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.2)  # two signals at once would arrive as one
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 130, stderr
    assert "SIGINT: stopping after this step" in stdout
    assert stderr.splitlines() == ["stopped before the first checkpoint; nothing was saved"]
    assert not (out / "early").exists() and list(out.iterdir()) == []


def test_only_a_lone_metrics_log_is_discarded(tmp_path: Path) -> None:
    made = tmp_path / "made"
    made.mkdir()
    (made / "metrics.jsonl").write_text("{}\n")
    assert discard_unsaved_run(made, made_here=True) and not made.exists()
    theirs = tmp_path / "theirs"  # a directory this run did not make stays, emptied
    theirs.mkdir()
    (theirs / "metrics.jsonl").write_text("{}\n")
    assert discard_unsaved_run(theirs, made_here=False) and list(theirs.iterdir()) == []
    kept = tmp_path / "kept"  # anything beside the log: nothing is touched
    kept.mkdir()
    (kept / "metrics.jsonl").write_text("{}\n")
    (kept / "notes.txt").write_text("mine")
    assert not discard_unsaved_run(kept, made_here=True)
    assert sorted(p.name for p in kept.iterdir()) == ["metrics.jsonl", "notes.txt"]


def test_a_full_disk_keeps_the_previous_checkpoint(corpus: Path, tmp_path: Path) -> None:
    """RLIMIT_FSIZE makes every write past 12 KB fail, as a full disk would."""
    out = tmp_path / "runs"
    args = ["train", corpus, *TINY, "--max-iters", "40", "--eval-interval", "10", "--out", out,
            "--run", "r", "--cache-dir", tmp_path / "cache"]  # fmt: skip
    run_ok(*args, "--stop-at", "10")
    snapshot = out / "r" / "latest"
    before = {f.name: f.read_bytes() for f in snapshot.iterdir()}

    def small_files() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (12_000, 12_000))

    proc = minigpt(*args, "--resume", preexec_fn=small_files)
    _, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 1
    assert stderr.startswith("error: could not write the checkpoint") and "intact" in stderr
    assert stderr.count("\n") == 1
    assert {f.name: f.read_bytes() for f in snapshot.iterdir()} == before


# ---------------------------------------------------------------------------------
# Resume rules, in process.


@pytest.fixture(scope="module")
def paused(corpus: Path) -> Path:
    out = corpus.parent / "rules"
    run_ok("train", corpus, *TINY, "--max-iters", "30", "--eval-interval", "10",
           "--out", out, "--run", "p", "--stop-at", "10")  # fmt: skip
    return out / "p"


def resume_args(corpus: Path, run: Path, *extra: str) -> list[str]:
    return ["train", str(corpus), "--out", str(run.parent), "--resume", str(run), *extra]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--n-layer", "2"], "cannot resume with a different model (n_layer 1 -> 2)"),
        (["--pos", "learned"], "pos_encoding 'rope' -> 'learned'"),
        (["--tokenizer", "bpe"], "another tokenizer"),
    ],
)
def test_resuming_with_another_model_or_tokenizer_is_refused(
    corpus: Path,
    paused: Path,
    extra: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    before = {f.name: f.read_bytes() for f in (paused / "latest").iterdir()}
    assert main(resume_args(corpus, paused, *extra)) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert {f.name: f.read_bytes() for f in (paused / "latest").iterdir()} == before


def test_changed_training_options_are_allowed_and_logged(corpus: Path, paused: Path) -> None:
    run = paused.parent / "changed"
    run_ok("train", corpus, *TINY, "--max-iters", "30", "--eval-interval", "10",
           "--out", paused.parent, "--run", "changed", "--stop-at", "10")  # fmt: skip
    extra = ("--lr", "0.001", "--max-iters", "20", "--threads", "1")
    done = run_ok(*resume_args(corpus, run, *extra))
    assert "changed: max_iters 30 -> 20, lr 0.003 -> 0.001\n" in done.stdout
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    resume = next(r for r in rows if r.get("event") == "resume")
    # the threads belong to the machine: recorded, never a change of the run's settings
    assert resume["changes"] == {"max_iters": [30, 20], "lr": [0.003, 0.001]}
    assert resume["threads"] == 1
    assert load_checkpoint(run).meta["step"] == 20


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("best", "holds weights only"),
        ("missing", "does not exist"),
    ],
)
def test_resuming_from_something_that_is_not_a_resumable_run_is_refused(
    corpus: Path, paused: Path, target: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    path = paused / target
    assert main(["train", str(corpus), "--resume", str(path)]) == 1
    assert message in capsys.readouterr().err


def test_resuming_a_finished_run_asks_for_a_new_limit(
    corpus: Path, paused: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_ok(*resume_args(corpus, paused))  # runs to its max_iters (30)
    assert main(resume_args(corpus, paused)) == 1
    assert "already finished (step 30); give a larger --max-iters" in capsys.readouterr().err


def test_a_bare_resume_without_a_run_of_the_file_says_what_to_do(
    corpus: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", str(corpus), "--out", str(tmp_path), "--resume"]) == 1
    assert "no run trained on this small.txt under" in capsys.readouterr().err


def test_a_damaged_training_state_is_refused(
    corpus: Path, paused: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    copy = tmp_path / "copy"
    (copy / "latest").mkdir(parents=True)
    for f in (paused / "latest").iterdir():
        (copy / "latest" / f.name).write_bytes(f.read_bytes())
    state = copy / "latest" / "train_state.safetensors"
    data = bytearray(state.read_bytes())
    data[-1] ^= 0xFF
    state.write_bytes(bytes(data))
    assert main(resume_args(corpus, copy)) == 1
    assert "train_state.safetensors is not the file" in capsys.readouterr().err


def test_a_second_signal_interrupts_at_once() -> None:
    notes: list[str] = []
    with GracefulStop(notes.append) as stop:
        assert not stop()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop() and stop.requested == "SIGTERM" and "stopping after this step" in notes[0]
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(1)  # the handler runs before this returns
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
