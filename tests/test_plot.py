"""`minigpt plot`: metrics.jsonl parsing (resumes, duplicates, a crash-cut last line), a
real PNG on disk, and one clear error line for a missing run or a missing matplotlib."""

import json
import math
import os
import sys
import time
from pathlib import Path

import pytest

from minigpt.cli import main
from minigpt.errors import CheckpointError, ConfigError
from minigpt.training.metrics import Eval, Metrics, find_metrics, read_metrics
from minigpt.training.plot import Run, draw_runs, plot_run, run_names

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
ROWS = [
    {"event": "start", "step": 0, "device": "cpu"},
    {"step": 10, "loss": 4.0, "lr": 1e-3, "tokens_per_s": 900.0, "elapsed": 1.0},
    {"step": 20, "loss": 3.5, "lr": 9e-4, "tokens_per_s": 950.0, "elapsed": 2.0, "mfu": 0.1},
    {"step": 20, "val_loss": 3.6, "val_bpb": 2.1},
    {"event": "resume", "step": 20},
    {"step": 30, "loss": None, "skipped": True, "lr": 8e-4, "tokens_per_s": 0.0, "elapsed": 3.0},
    {"step": 20, "loss": 3.4, "lr": 9e-4, "tokens_per_s": 990.0, "elapsed": 2.5, "new_key": 1},
    {"step": 40, "loss": 3.0, "lr": 5e-4, "tokens_per_s": 1000.0, "elapsed": 4.0},
    {"step": 40, "val_loss": 3.2, "val_bpb": 1.9, "final": True},
]


def write_run(run: Path, tail: str = '{"step": 50, "lo') -> Path:
    run.mkdir(parents=True, exist_ok=True)
    lines = [json.dumps(row) for row in ROWS]
    lines.insert(3, "")  # a blank line is skipped
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n" + tail)
    return run


def test_read_metrics(tmp_path: Path) -> None:
    m = read_metrics(write_run(tmp_path / "run") / "metrics.jsonl")
    assert m.steps == [10, 20, 30, 40]
    assert m.loss[:2] == [4.0, 3.4]  # the later row for step 20 wins
    assert math.isnan(m.loss[2]) and m.loss[3] == 3.0  # step 30 was skipped
    assert m.lr == [1e-3, 9e-4, 8e-4, 5e-4]
    assert m.evals == [(20, 3.6, 2.1, False), (40, 3.2, 1.9, True)]
    assert m.resumes == [20]


def test_a_bad_middle_line_is_skipped_and_counted(tmp_path: Path) -> None:
    path = write_run(tmp_path / "run", tail="")
    whole = read_metrics(path / "metrics.jsonl")
    text = path.joinpath("metrics.jsonl").read_text().splitlines()
    text[4] = '{"step": 25, "loss": '
    path.joinpath("metrics.jsonl").write_text("\n".join(text) + "\n")
    damaged = read_metrics(path / "metrics.jsonl")
    assert damaged.damaged == [5]
    assert damaged.steps == whole.steps and damaged.evals == whole.evals[1:]  # its eval row


@pytest.mark.parametrize(
    "bad",
    ["[1, 2]", '{"step": "1", "loss": 3.0}', '{"step": 2, "loss": "high", "lr": 0.1}',
     '{"step": 2, "val_loss": [3], "val_bpb": 2.0}', "{" * 10_000 + "}" * 10_000],
)  # fmt: skip
def test_rows_that_are_not_metrics_are_counted(tmp_path: Path, bad: str) -> None:
    good = '{"step": 1, "loss": 3.0, "lr": 0.1}'
    (tmp_path / "metrics.jsonl").write_text(f"{good}\n{bad}\n{good}\n")
    m = read_metrics(tmp_path / "metrics.jsonl")
    assert m.damaged == [2] and m.steps == [1] and m.evals == []


@pytest.mark.parametrize(
    "content", ["", '{"step": 1, "val_loss": 3.0, "val_bpb": 2.0}\n', "[1]\n{}\n"]
)
def test_metrics_without_steps_are_refused(tmp_path: Path, content: str) -> None:
    (tmp_path / "metrics.jsonl").write_text(content)
    with pytest.raises(CheckpointError, match="no training steps"):
        read_metrics(tmp_path / "metrics.jsonl")


def test_find_metrics(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    (run / "latest").mkdir()
    metrics = run / "metrics.jsonl"
    assert find_metrics(run) == find_metrics(run / "latest") == find_metrics(metrics) == metrics
    with pytest.raises(CheckpointError, match="no metrics.jsonl"):
        find_metrics(tmp_path)


def test_plot_writes_a_png(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    from matplotlib.image import imread

    run = write_run(tmp_path / "run")
    out = plot_run(read_metrics(run / "metrics.jsonl"), "run", tmp_path / "figs" / "loss.png")
    assert out.read_bytes()[:8] == PNG_SIGNATURE
    height, width, _ = imread(out).shape
    assert height > 0 and width > 0


def test_cli_plot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    write_run(Path("checkpoints/run"))
    assert main(["plot", "checkpoints/run"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"wrote {Path('checkpoints/run/loss.png')}"
    assert Path("checkpoints/run/loss.png").read_bytes()[:8] == PNG_SIGNATURE
    assert main(["plot", "checkpoints/run/latest", "--out", "a/b.png"]) == 1  # no snapshot dir
    assert main(["plot", "checkpoints/run", "--out", "a/b.png"]) == 0
    assert Path("a/b.png").read_bytes()[:8] == PNG_SIGNATURE


def one_error_line(capsys: pytest.CaptureFixture) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]


def test_cli_without_matplotlib(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.delenv("MINIGPT_DEBUG", raising=False)
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    run = write_run(tmp_path / "run")
    assert main(["plot", str(run)]) == 1
    assert one_error_line(capsys) == (
        'error: minigpt plot needs matplotlib; install it with pip install "minigpt[plot]"'
    )
    assert not (run / "loss.png").exists()


@pytest.mark.parametrize(
    "args, expected",
    [
        (["plot", "checkpoints/nope"], "checkpoints/nope does not exist"),
        (["plot", "."], "no metrics.jsonl in"),
        (["plot", "run", "--out", "loss.jpg"], "must be a .png file"),
    ],
)
def test_cli_user_errors(
    args: list[str],
    expected: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINIGPT_DEBUG", raising=False)
    write_run(tmp_path / "run")
    assert main(args) == 1
    assert expected in one_error_line(capsys)


# ---------------------------------------------------------------------------------
# The newest run by default, several runs overlaid, an axis that does not zoom into noise.


def test_cli_plot_without_a_run_draws_the_newest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    saved = write_run(Path("checkpoints/saved"))
    (saved / "latest").mkdir()
    fresh = write_run(Path("checkpoints/fresh"))  # still before its first save: a log only
    for age, run in ((200, saved), (100, fresh)):
        os.utime(run / "metrics.jsonl", ns=(0, time.time_ns() - age * 10**9))
    assert main(["plot"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {fresh / 'loss.png'}"
    os.utime(saved / "metrics.jsonl")  # the saved run logs again: it is the newest now
    assert main(["plot"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {saved / 'loss.png'}"
    assert (fresh / "loss.png").read_bytes()[:8] == (saved / "loss.png").read_bytes()[:8]
    elsewhere = write_run(Path("elsewhere/other"))
    assert main(["plot", "--checkpoints", "elsewhere"]) == 0
    assert capsys.readouterr().out.strip() == f"wrote {elsewhere / 'loss.png'}"


def test_cli_plot_without_any_run_is_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINIGPT_DEBUG", raising=False)
    Path("checkpoints/empty").mkdir(parents=True)
    assert main(["plot"]) == 1
    assert "no run under checkpoints/" in one_error_line(capsys)


def test_same_named_runs_keep_distinct_legend_names(tmp_path: Path) -> None:
    paths = [tmp_path / "a" / "r", tmp_path / "b" / "r", tmp_path / "x" / "b" / "r", tmp_path / "q"]
    # each its name, with as many parents as it takes to tell it from the others
    assert run_names(paths) == ["a/r", f"{tmp_path.name}/b/r", "x/b/r", "q"]
    with pytest.raises(ConfigError, match="given twice"):
        run_names([tmp_path / "a" / "r", tmp_path / "a" / "." / "r"])


def metrics_with(steps: list[int], bpb: list[float], loss: float = 3.0) -> Metrics:
    evals = [
        Eval(s, loss + 0.1 * i, b, False) for i, (s, b) in enumerate(zip(steps, bpb, strict=True))
    ]
    return Metrics(steps=steps, loss=[loss - 0.01 * i for i in range(len(steps))],
                   lr=[1e-3] * len(steps), evals=evals)  # fmt: skip


def test_several_runs_get_one_colour_each_named_in_the_legend() -> None:
    to_hex = pytest.importorskip("matplotlib.colors").to_hex
    legend_type = pytest.importorskip("matplotlib.legend").Legend
    runs = [Run("a/r", metrics_with([10, 20], [2.0, 1.9])),
            Run("b/r", metrics_with([10, 20, 30], [2.5, 2.2, 2.0], loss=4.0)),
            Run("rope", metrics_with([5, 15], [3.0, 2.9], loss=3.5))]  # fmt: skip
    fig = draw_runs(runs, "3 runs")
    ax_loss = fig.axes[0]
    train_colours = []
    for run in runs:
        [line] = [ln for ln in ax_loss.get_lines()
                  if list(ln.get_xdata()) == run.metrics.steps
                  and list(ln.get_ydata()) == run.metrics.loss]  # fmt: skip
        train_colours.append(to_hex(line.get_color()))
    assert len(set(train_colours)) == len(runs)
    [legend] = [a for a in ax_loss.get_children()
                if isinstance(a, legend_type) and a.get_title().get_text() == "run"]  # fmt: skip
    named = {t.get_text(): to_hex(h.get_color()) for t, h in
             zip(legend.get_texts(), legend.legend_handles, strict=True)}  # fmt: skip
    assert named == dict(zip([r.name for r in runs], train_colours, strict=True))


def test_cli_plot_overlays_several_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("matplotlib")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINIGPT_DEBUG", raising=False)
    write_run(Path("a/r")), write_run(Path("b/r"))
    assert main(["plot", "a/r", "b/r/metrics.jsonl"]) == 0
    assert capsys.readouterr().out.strip() == "wrote loss.png"  # several runs: ./loss.png
    assert Path("loss.png").read_bytes()[:8] == PNG_SIGNATURE
    assert not Path("a/r/loss.png").exists() and not Path("b/r/loss.png").exists()
    assert main(["plot", "a/r", "b/r", "-o", "cmp/ab.png"]) == 0
    assert Path("cmp/ab.png").read_bytes()[:8] == PNG_SIGNATURE
    assert main(["plot", "a/r", "a/r/metrics.jsonl"]) == 1
    assert "given twice" in one_error_line(capsys)


@pytest.mark.parametrize(
    "bpb", [[2.100, 2.104, 2.102], [0.010, 0.012, 0.011], [2.0, 2.0, 2.0], [40.0, 40.3, 40.1]]
)
def test_bits_per_byte_axis_keeps_a_minimum_span(bpb: list[float]) -> None:
    pytest.importorskip("matplotlib")
    fig = draw_runs([Run("r", metrics_with([10, 20, 30], bpb))], "r")
    [ax] = [ax for ax in fig.axes if ax.get_ylabel() == "val bits/byte"]
    bottom, top = ax.get_ylim()
    assert top - bottom >= max(0.1, 0.05 * max(bpb)) - 1e-12
    assert bottom <= min(bpb) and max(bpb) <= top
    assert bottom >= 0  # bits per byte are never negative
    assert abs((bottom + top) / 2 - (min(bpb) + max(bpb)) / 2) < 1e-9 or bottom == 0


def test_a_wide_bits_per_byte_axis_is_left_alone() -> None:
    pytest.importorskip("matplotlib")
    bpb = [4.0, 3.0, 2.0]
    fig = draw_runs([Run("r", metrics_with([10, 20, 30], bpb))], "r")
    [ax] = [ax for ax in fig.axes if ax.get_ylabel() == "val bits/byte"]
    bottom, top = ax.get_ylim()
    assert bottom <= 2.0 and top >= 4.0 and top - bottom < 2.5  # matplotlib's own margins
