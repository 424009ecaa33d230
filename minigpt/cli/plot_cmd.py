"""`minigpt plot`: draw a training run's loss curves to a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minigpt.cli.terminal import stdout
from minigpt.training.metrics import find_metrics
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
    metrics = find_metrics(run)
    written = plot_run(metrics, out or metrics.parent / "loss.png")
    stdout().print(f"wrote {written}", markup=False, soft_wrap=True)
