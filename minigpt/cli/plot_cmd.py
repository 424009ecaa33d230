"""`minigpt plot`: draw a training run's loss curves to a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minigpt.cli.terminal import stderr, stdout
from minigpt.training.metrics import find_metrics, read_metrics
from minigpt.training.plot import plot_run


def plot(
    run: Annotated[
        Path,
        typer.Argument(
            help="A run directory (checkpoints/<run>), a snapshot in it, or its metrics.jsonl."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", "-o", help="The PNG to write [<run>/loss.png].", show_default=False),
    ] = None,
) -> None:
    """Plot a run's train and validation loss, bits per byte and learning rate against step.

    Needs matplotlib (the `plot` extra of minigpt, or pip install matplotlib).
    """
    path = find_metrics(run)
    metrics = read_metrics(path)
    if metrics.damaged:
        lines = ", ".join(map(str, metrics.damaged[:5])) + (", ..." * (len(metrics.damaged) > 5))
        stderr().print(
            f"note: skipped {len(metrics.damaged)} damaged line(s) of {path} (line {lines})",
            markup=False,
        )
    written = plot_run(metrics, path.parent.resolve().name, out or path.parent / "loss.png")
    stdout().print(f"wrote {written}", markup=False, soft_wrap=True)
