"""`minigpt train --tensorboard DIR`: the rows of metrics.jsonl as TensorBoard scalars,
read back with TensorBoard's own reader, through a resume that rewinds the run; and one
clear line, before anything is trained, when the tensorboard package is missing."""

import json
import shutil
import sys
from pathlib import Path
from typing import Any

import pytest

from minigpt.cli import main

TRAIN = ["-t", "char", "--preset", "tiny", "--batch-size", "4", "--eval-interval", "5",
         "--log-interval", "2", "--sample-every", "0", "--run", "r"]  # fmt: skip
TRAIN_KEYS = ("loss", "lr", "grad_norm", "tokens_per_s", "mfu", "elapsed")


def expected_scalars(run: Path) -> dict[str, list[tuple[int, float, float]]]:
    """What TensorBoard should hold, from metrics.jsonl: tag -> (step, value, wall time)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    scalars: dict[str, list[tuple[int, float, float]]] = {}
    for row in rows:
        if "event" in row:
            continue
        if "loss" in row:
            group, keys = "train", TRAIN_KEYS
        else:
            group, keys = ("final" if row.get("final") else "eval"), ("val_loss", "val_bpb")
        for key in keys:
            if row[key] is not None:
                scalars.setdefault(f"{group}/{key}", []).append(
                    (row["step"], row[key], row["time"])
                )
    return scalars


def board_scalars(log_dir: Path) -> dict[str, list[Any]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(log_dir))
    events.Reload()
    return {tag: events.Scalars(tag) for tag in events.Tags()["scalars"]}


def assert_board_matches_metrics(log_dir: Path, run: Path) -> None:
    expected, found = expected_scalars(run), board_scalars(log_dir)
    assert set(found) == set(expected)
    for tag, rows in expected.items():
        assert [e.step for e in found[tag]] == [step for step, _, _ in rows], tag
        for event, (_, value, wall_time) in zip(found[tag], rows, strict=True):
            assert event.value == pytest.approx(value, rel=1e-6), tag  # stored as float32
            assert event.wall_time == pytest.approx(wall_time, abs=1e-6), tag


@pytest.fixture
def workdir(tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINIGPT_DEBUG", raising=False)
    Path("t.txt").write_text(small_text[:8000])
    return tmp_path


def test_tensorboard_holds_the_scalars_of_metrics_jsonl(workdir: Path) -> None:
    pytest.importorskip("tensorboard")
    assert main(["train", "t.txt", *TRAIN, "--max-iters", "10", "--tensorboard", "tb"]) == 0
    run = workdir / "checkpoints" / "r"
    assert_board_matches_metrics(workdir / "tb" / "r", run)  # DIR/<run>: runs side by side
    assert {"train/loss", "eval/val_bpb", "final/val_bpb"} <= set(expected_scalars(run))


def test_a_rewound_resume_drops_the_later_events_as_metrics_does(workdir: Path) -> None:
    pytest.importorskip("tensorboard")
    run = workdir / "checkpoints" / "r"
    board = ["--tensorboard", "tb"]
    assert main(["train", "t.txt", *TRAIN, "--max-iters", "14", "--stop-at", "6", *board]) == 0
    shutil.copytree(run / "latest", workdir / "step6")
    assert main(["train", "t.txt", "--resume", str(run), *board]) == 0  # on to step 14
    shutil.rmtree(run / "latest")
    shutil.copytree(workdir / "step6", run / "latest")  # back to step 6, and on again
    assert main(["train", "t.txt", "--resume", str(run), *board]) == 0
    assert_board_matches_metrics(workdir / "tb" / "r", run)


def test_missing_tensorboard_is_one_line_before_training(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    for name in [m for m in sys.modules if m.split(".")[0] == "tensorboard"]:
        monkeypatch.delitem(sys.modules, name)
    for name in [m for m in sys.modules if m.startswith("torch.utils.tensorboard")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "tensorboard", None)
    assert main(["train", "t.txt", *TRAIN, "--max-iters", "4", "--tensorboard", "tb"]) == 1
    err = capsys.readouterr().err
    assert err.strip() == (
        "error: --tensorboard needs the tensorboard package; install it with "
        'pip install "minigpt[tensorboard]"'
    )
    assert not Path("checkpoints").exists() and not Path("data").exists()  # nothing ran
