"""Crash safety through real processes: SIGKILL at random moments of a run that saves
every step, saves included; every time the run resumes from a complete checkpoint, and
it still ends bit-identical to the same run left alone. (Its own file: the longest
test of the suite, run beside the rest of `test_resume.py` by a parallel run.)
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from minigpt.checkpoint import load_checkpoint, read_snapshot, resolve_snapshot
from tests.conftest import SHAKESPEARE
from tests.test_resume import (
    TIMEOUT,
    TINY,
    assert_same_weights,
    minigpt,
    per_step,
    run_ok,
    wait_for,
)


def test_sigkill_at_random_moments_always_leaves_a_complete_checkpoint(tmp_path: Path) -> None:
    """Saving every step, most kills land in or near a save."""
    corpus = tmp_path / "small.txt"
    corpus.write_bytes(SHAKESPEARE.read_bytes()[:30_000])
    out = tmp_path / "kill"
    args = ["train", corpus, *TINY, "--max-iters", "150", "--eval-interval", "50",
            "--save-every", "1", "--out", out]  # fmt: skip
    run_ok(*args, "--run", "reference")
    run_ok(*args, "--run", "killed", "--stop-at", "3")
    run = out / "killed"
    rng = random.Random(1234)
    steps = [3]
    for attempt in range(1, 9):
        proc = minigpt(*args, "--run", "killed", "--resume")
        wait_for(run, '"event": "resume"', proc, count=attempt)  # it has started training
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=TIMEOUT)
        snapshot = resolve_snapshot(run)
        state = read_snapshot(snapshot, train_state=True).train_state.meta  # sha256s match
        ckpt = load_checkpoint(snapshot)
        assert ckpt.meta["step"] == state["step"] >= steps[-1]
        steps.append(state["step"])
        if state["step"] == 150:  # the kill came after the run finished
            break
    assert len(set(steps)) > 3, f"the kills hardly moved the run: {steps}"
    if steps[-1] < 150:
        run_ok(*args, "--run", "killed", "--resume")
    assert per_step(run) == per_step(out / "reference")
    assert_same_weights(run, out / "reference")
    assert not list(run.glob(".*tmp*")), "half-written snapshots were left behind"
