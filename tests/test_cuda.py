"""The CUDA paths on a real GPU: what `--precision auto` and `--compile auto` pick there,
fused AdamW, exact resume in a new process, and a 1-GPU torchrun run that matches a
plain one. Every test here needs a CUDA GPU and is skipped (not passed) without one;
the CPU paths are tested everywhere else."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minigpt.config import TrainConfig
from minigpt.model import GPT
from minigpt.training.optim import make_optimizer
from tests.conftest import SHAKESPEARE, tiny_config
from tests.test_resume import assert_same_weights, per_step, weights

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

TIMEOUT = 300  # seconds; compiling on a fresh machine takes tens of them
TINY = [
    "--tokenizer", "char", "--preset", "tiny", "--n-layer", "2", "--n-embd", "32",
    "--block-size", "32", "--batch-size", "8", "--dropout", "0.1", "--log-interval", "1",
    "--sample-every", "0", "--device", "cuda",
]  # fmt: skip


def _minigpt(*args: str | Path, launcher: list[str] | None = None) -> str:
    """Run `minigpt ARGS` (under `launcher`, e.g. torchrun); its stdout."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root, "COLUMNS": "160"}
    command = [*(launcher or [sys.executable, "-m"]), "minigpt", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=TIMEOUT, env=env)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cuda") / "small.txt"
    path.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:60_000], encoding="utf-8")
    return path


def _val_losses(run: Path) -> list[tuple[int, float]]:
    return [(step, val) for step, _, val in per_step(run) if val is not None]


def test_auto_trains_in_bf16_and_learns(corpus: Path) -> None:
    out = corpus.parent / "runs"
    stdout = _minigpt("train", corpus, *TINY, "--max-iters", "150", "--eval-interval", "50",
                      "--out", out, "--run", "auto")  # fmt: skip
    assert "bf16 autocast (a CUDA GPU with bf16 support)" in stdout, stdout
    vals = [val for _, val in _val_losses(out / "auto")]
    assert len(vals) >= 3 and vals[-1] < vals[0] - 0.5, vals


def test_a_compiled_run_records_what_compiling_cost_and_auto_uses_it(corpus: Path) -> None:
    out = corpus.parent / "compiled"
    args = ["train", corpus, *TINY, "--out", out, "--eval-interval", "50"]
    eager = _minigpt(*args, "--max-iters", "40", "--run", "eager")
    assert "eager (what compiling this model costs and gains here is not measured" in eager
    on = _minigpt(*args, "--max-iters", "40", "--run", "on", "--compile", "on")
    assert "torch.compile as asked" in on
    long = _minigpt(*args, "--max-iters", "1000000", "--stop-at", "1", "--run", "long")
    assert re.search(r"compiling this model took \d+ s here and its steps ran", long), long


def test_adamw_is_fused_on_cuda() -> None:
    model = GPT(tiny_config()).to("cuda")
    optimizer = make_optimizer(model, TrainConfig(), torch.device("cuda"))
    assert isinstance(optimizer, torch.optim.AdamW) and optimizer.defaults["fused"] is True


def test_stop_and_resume_on_cuda_is_bit_identical(corpus: Path) -> None:
    """Eager: a compiled model's kernels can differ between processes (a cold compile
    and one from the compile cache), so two compiled runs part in the last bits of the
    loss even without a resume (seen on an H200 at step 14)."""
    out = corpus.parent / "resume"
    planned = ["--max-iters", "200", "--eval-interval", "50", "--precision", "bf16",
               "--compile", "off", "--out", out]  # fmt: skip
    _minigpt("train", corpus, *TINY, *planned, "--run", "full")
    _minigpt("train", corpus, *TINY, *planned, "--run", "paused", "--stop-at", "133")
    resumed = _minigpt("train", corpus, "--out", out, "--run", "paused", "--resume")
    assert "resumed    at step 133" in resumed
    assert per_step(out / "paused") == per_step(out / "full")  # every loss, bit for bit
    assert_same_weights(out / "paused", out / "full")


def test_one_gpu_under_torchrun_matches_one_plain_process(corpus: Path) -> None:
    out = corpus.parent / "torchrun"
    args = ["train", corpus, *TINY, "--max-iters", "40", "--eval-interval", "20",
            "--precision", "fp32", "--compile", "off", "--dropout", "0", "--out", out]  # fmt: skip
    _minigpt(*args, "--run", "plain")
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node=1", "-m", "--"]  # fmt: skip
    _minigpt(*args, "--run", "torchrun", launcher=launcher)
    plain, ranked = weights(out / "plain"), weights(out / "torchrun")
    for name in plain:
        torch.testing.assert_close(ranked[name], plain[name], rtol=0, atol=1e-5, msg=name)
    plain_evals, ranked_evals = ([step for step, _ in _val_losses(out / run)]
                                 for run in ("plain", "torchrun"))  # fmt: skip
    assert plain_evals == ranked_evals and plain_evals[-1] == 40
