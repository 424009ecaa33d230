"""`minigpt plot`: draw training runs' loss curves to a PNG, one run or several overlaid."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minigpt.cli.settings import option
from minigpt.cli.terminal import stderr, stdout
from minigpt.training.metrics import Metrics, find_metrics, newest_metrics, read_metrics
from minigpt.training.plot import Run, plot_runs, run_names

RUNS = Path("checkpoints")
COMPARED_PNG = Path("loss.png")  # where several runs are drawn without --out


def plot(
    runs: Annotated[
        list[Path] | None,
        typer.Argument(
            help="Run directories (checkpoints/<run>), snapshots in them, or their "
            "metrics.jsonl; several are overlaid. Default: the newest run.",
            metavar="RUN",
            show_default=False,
        ),
    ] = None,
    out: Annotated[
        Path | None,
        option(
            "The PNG to write.",
            "--out",
            "-o",
            default="<run>/loss.png; with several runs ./loss.png",
            metavar="FILE",
        ),
    ] = None,
    root: Annotated[
        Path,
        option(
            "Where to look for the newest run.", "--checkpoints", default=str(RUNS), metavar="DIR"
        ),
    ] = RUNS,
) -> None:
    """Plot runs' train and validation loss, bits per byte and learning rate against step.

    Several runs share the axes, one colour each, named in the legend. Needs matplotlib
    (the `plot` extra of minigpt, or pip install matplotlib).
    """
    paths = [find_metrics(run) for run in runs] if runs else [newest_metrics(root)]
    run_dirs = [path.parent for path in paths]
    names = run_names(run_dirs)
    loaded = [Run(name, read_noting_damage(path)) for name, path in zip(names, paths, strict=True)]
    if len(loaded) == 1:
        title, default_out = names[0], run_dirs[0] / "loss.png"
    else:
        title, default_out = f"{len(loaded)} runs", COMPARED_PNG
    written = plot_runs(loaded, title, out or default_out)
    stdout().print(f"wrote {written}", markup=False, soft_wrap=True)


def read_noting_damage(path: Path) -> Metrics:
    """A run's metrics; damaged lines are skipped, and named in a note on stderr."""
    metrics = read_metrics(path)
    if metrics.damaged:
        lines = ", ".join(map(str, metrics.damaged[:5])) + (", ..." * (len(metrics.damaged) > 5))
        stderr().print(
            f"note: skipped {len(metrics.damaged)} damaged line(s) of {path} (line {lines})",
            markup=False,
        )
    return metrics
