"""What `minigpt train` prints in a pipe: the run header (the architecture on one line,
the small-data warning and its advice) and the evaluation lines."""

import io
import re
from pathlib import Path

import pytest
from rich.console import Console

from minigpt.checkpoint import load_checkpoint
from minigpt.cli import main
from minigpt.cli.dashboard import PlainReporter
from minigpt.config import GPTConfig, TrainConfig
from minigpt.parameters import count_parameters
from minigpt.training.metrics import MetricsProcessor
from minigpt.training.reporting import EvalInfo, RunInfo, SilentReporter, StepInfo
from minigpt.training.sizing import dataset_size_warning, shape_parameters
from minigpt.training.state import TrainState

QUICK = ["--max-iters", "2", "--eval-interval", "2", "--batch-size", "2", "--sample-every", "0"]


def train_output(capsys: pytest.CaptureFixture, text: Path, out: Path, *args: str) -> str:
    """stdout of `minigpt train TEXT ARGS` (a pipe, so the plain reporter), which must pass."""
    code = main(["train", str(text), "--out", str(out), *QUICK, *args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def warning_of(output: str) -> str | None:
    found = [line for line in output.splitlines() if line.startswith("warning")]
    return found[0] if found else None


def test_the_best_marker_stands_beside_the_loss_it_judges() -> None:
    # The final pass covers the whole split: its loss can be the lowest while its bits
    # per byte are worse than an earlier estimate's. The marker names the loss.
    buffer = io.StringIO()
    PlainReporter(Console(file=buffer, width=200)).eval(
        EvalInfo(step=500, val_loss=1.49, val_bpb=2.25, final=True, best=True)
    )
    line = buffer.getvalue().strip()
    assert "loss 1.4900 nats/token (best val loss so far), 2.2500 bits/byte" in line
    assert line.endswith("bits/byte")  # nothing marks the bits per byte


def test_the_header_states_the_architecture_on_one_line(
    tmp_path: Path, small_text: str, capsys: pytest.CaptureFixture
) -> None:
    text = tmp_path / "t.txt"
    text.write_text(small_text)
    out = train_output(capsys, text, tmp_path / "runs", "--preset", "tiny", "-t", "char",
                       "--run", "r", "--no-tie")  # fmt: skip
    model = load_checkpoint(tmp_path / "runs" / "r").model
    n_params = sum(count_parameters(model).values())
    expected = (
        "model      2 layers, 2 heads, width 32, context 64, rope positions, rmsnorm, "
        f"swiglu MLP (hidden 88), untied embedding, {n_params:,} parameters"
    )
    assert expected in out.splitlines()
    assert re.search(r"^parameters +embedding [\d,]+, ", out, re.MULTILINE)


def test_the_small_data_advice_names_a_preset_that_fits_and_following_it_helps(
    tmp_path: Path, small_text: str, capsys: pytest.CaptureFixture
) -> None:
    text = tmp_path / "t.txt"
    text.write_text(small_text)  # 27,000 training characters: the default small is too big
    runs = tmp_path / "runs"
    warning = warning_of(train_output(capsys, text, runs, "-t", "char", "--run", "a"))
    assert warning is not None
    advised = re.search(r"--preset (\w+) \(([\d,]+) parameters\)", warning)
    budget = re.search(r"about ([\d,]+) parameters or fewer", warning)
    assert advised and budget and advised[1] != "small", warning
    assert int(advised[2].replace(",", "")) <= int(budget[1].replace(",", ""))
    again = train_output(capsys, text, runs, "-t", "char", "--run", "b", "--preset", advised[1])
    assert warning_of(again) is None


def test_with_no_preset_small_enough_the_advice_is_a_shape_that_fits(
    tmp_path: Path, small_text: str, capsys: pytest.CaptureFixture
) -> None:
    text = tmp_path / "t.txt"
    text.write_text(small_text[:5_000])  # 4,500 training characters: tiny is too big
    runs = tmp_path / "runs"
    first = train_output(capsys, text, runs, "-t", "char", "--run", "a", "--preset", "tiny")
    warning = warning_of(first)
    assert warning is not None and "--preset" not in warning  # never the preset in use
    assert re.search(r"no preset is that small \(tiny has [\d,]+ with this vocabulary\)", warning)
    shape = re.search(r"add (--n-layer \d+ --n-head \d+ --n-embd \d+) \(([\d,]+) parameters\)",
                      warning)  # fmt: skip
    assert shape, warning
    options = shape[1].split()
    again = train_output(capsys, text, runs, "-t", "char", "--run", "b", "--preset", "tiny",
                         *options)  # fmt: skip
    assert warning_of(again) is None
    model = load_checkpoint(runs / "b").model
    assert sum(count_parameters(model).values()) == int(shape[2].replace(",", ""))


def test_the_warning_says_when_no_model_is_small_enough() -> None:
    config = GPTConfig(vocab_size=50257, n_layer=2, n_head=2, n_embd=32, block_size=64)
    message = dataset_size_warning(100, config, shape_parameters(config), max_block=64)
    assert message is not None and "give more text" in message
    assert "nor is any shape with a vocabulary of 50,257 tokens" in message
    assert dataset_size_warning(1_000_000, config, 800_000, max_block=64) is None


def test_mfu_never_shows_above_100_percent(tmp_path: Path) -> None:
    """A peak measured while the machine was busy came out low: MFU showed 104%, 112%."""
    shown: list[float] = []

    class Keep(SilentReporter):
        def step(self, info: StepInfo) -> None:
            shown.append(info.mfu)

    metrics = MetricsProcessor(TrainConfig(), Keep(), writes=False)
    metrics.start(RunInfo(
        run_dir=tmp_path, device="cpu", precision="fp32", compiled="off", model=GPTConfig(),
        num_params=1, param_counts={}, tokens_per_step=1000, train_tokens=1, val_tokens=1,
        world_size=1, threads=1, flops_per_token=10**6, peak_flops=1e6,  # far below a step
    ))  # fmt: skip
    for step in (1, 2):
        metrics.log_step(TrainState(step=step), 1.0, 1e-3, 0.0, step / 10)
    assert shown and all(0 < mfu <= 1 for mfu in shown)
