"""A run's loss curves as a PNG: loss, bits per byte and LR from `metrics.jsonl`
(`metrics.read_metrics` parses it; this module only draws).

matplotlib is optional (`pip install "minigpt[plot]"`) and imported only when drawing.
The figure is rendered on an Agg canvas of its own, so no window ever opens and the
caller's matplotlib backend is left alone.
"""

from __future__ import annotations

import io
import math
from pathlib import Path

from minigpt.errors import ConfigError, MissingDependencyError
from minigpt.fileio import write_atomic
from minigpt.training.metrics import Metrics


def plot_run(m: Metrics, title: str, out_path: Path) -> Path:
    """Draw the run's train/val loss, val bits per byte and learning rate; returns out_path."""
    if out_path.suffix.lower() != ".png":
        raise ConfigError(f"--out {out_path} must be a .png file")
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingDependencyError(
            'minigpt plot needs matplotlib; install it with pip install "minigpt[plot]"'
        ) from e
    fig = Figure(figsize=(9, 9), layout="constrained")
    FigureCanvasAgg(fig)  # render with Agg, whatever backend the process uses
    ax_loss, ax_bpb, ax_lr = fig.subplots(3, 1, sharex=True, height_ratios=(2, 1, 1))
    fig.suptitle(title)
    ax_loss.plot(m.steps, m.loss, lw=1, color="C0", label="train loss")
    skipped = [s for s, loss in zip(m.steps, m.loss, strict=True) if math.isnan(loss)]
    if skipped:  # ticks along the bottom edge, where a non-finite loss was skipped
        ax_loss.plot(skipped, [0.03] * len(skipped), "x", color="C3", label="skipped (non-finite)",
                     transform=ax_loss.get_xaxis_transform())  # fmt: skip
    periodic = [e for e in m.evals if not e.final]
    final = [e for e in m.evals if e.final]
    for ax, key, name in ((ax_loss, "val_loss", "val loss"), (ax_bpb, "val_bpb", "val bits/byte")):
        ax.plot([e.step for e in periodic], [getattr(e, key) for e in periodic], "o-", ms=4,
                color="C1", label=name)  # fmt: skip
        ax.plot([e.step for e in final], [getattr(e, key) for e in final], "*", ms=12,
                color="C2", label=f"{name} (whole split)")  # fmt: skip
    if not m.evals:
        ax_bpb.text(0.5, 0.5, "no evaluations logged", ha="center", transform=ax_bpb.transAxes)
    ax_lr.plot(m.steps, m.lr, lw=1, color="C4")
    for ax in (ax_loss, ax_bpb, ax_lr):
        for i, step in enumerate(m.resumes):
            ax.axvline(step, lw=0.8, ls="--", color="grey", label="resume" if i == 0 else None)
        ax.grid(alpha=0.3)
    ax_loss.set_ylabel("loss (nats/token)")
    ax_bpb.set_ylabel("val bits/byte")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    ax_loss.legend()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_path, buf.getvalue())
    return out_path
