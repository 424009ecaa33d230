"""Runs' loss curves as a PNG: loss, bits per byte and LR from `metrics.jsonl`
(`metrics.read_metrics` parses it; this module names the runs and draws).

One colour per run, one style per series: the training loss is a line, periodic
evaluations are dots on a dashed line, the final whole-split evaluation a star, a
skipped step a cross on the bottom edge, a resume a vertical dotted line. Several runs
share the axes, so runs can be compared (e.g. position encodings); the legend names
each by its directory, with as many parent directories as it takes to tell same-named
runs apart.

A loss or bits-per-byte axis never zooms into noise: its visible span is at least
`MIN_SPAN` or `MIN_SPAN_RATIO` of its largest value, whichever is larger.

matplotlib is optional (`pip install "minigpt[plot]"`) and imported only when drawing.
The figure is rendered on an Agg canvas of its own, so no window ever opens and the
caller's matplotlib backend is left alone.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from minigpt.errors import ConfigError, MissingDependencyError
from minigpt.fileio import PathLike, write_atomic
from minigpt.training.metrics import Metrics

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from matplotlib.legend import Legend

MIN_SPAN = 0.1  # nats or bits: the smallest visible range of a loss axis
MIN_SPAN_RATIO = 0.05  # ... or this share of the largest value, if larger
STYLE_COLOUR = "0.35"  # the legend of line styles is drawn in grey


class Run(NamedTuple):
    """A run to draw: its legend name and its metrics."""

    name: str
    metrics: Metrics


def run_names(paths: Sequence[PathLike]) -> list[str]:
    """Legend names for run directories: each its directory's name, with as many parent
    directories as it takes to tell it from the others (a/r and b/r). The same run
    given twice is refused."""
    parts = [Path(p).resolve().parts for p in paths]
    for i, p in enumerate(parts):
        if p in parts[:i]:
            raise ConfigError(f"the run {paths[i]} is given twice; give each run once")
    names = []
    for p in parts:
        others = [q for q in parts if q != p]
        k = 1
        while any(q[-k:] == p[-k:] for q in others):
            k += 1
        names.append(str(Path(*p[-k:])))
    return names


def plot_run(m: Metrics, title: str, out_path: PathLike) -> Path:
    """Draw one run's train/val loss, val bits per byte and learning rate; returns out_path."""
    return plot_runs([Run(title, m)], title, out_path)


def plot_runs(runs: Sequence[Run], title: str, out_path: PathLike) -> Path:
    """Draw several runs on the same axes, one colour each, to a PNG; returns out_path."""
    out_path = Path(out_path)
    if out_path.suffix.lower() != ".png":
        raise ConfigError(f"--out {out_path} must be a .png file")
    fig = draw_runs(runs, title)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=120)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(out_path, buf.getvalue())
    return out_path


def draw_runs(runs: Sequence[Run], title: str) -> Figure:
    """The figure: loss (nats/token), val bits per byte and learning rate against step."""
    fig = _figure()
    ax_loss, ax_bpb, ax_lr = fig.axes
    fig.suptitle(title)
    colours = _colours(len(runs))
    for run, colour in zip(runs, colours, strict=True):
        _draw_run(fig.axes, run.metrics, colour)
    ms = [run.metrics for run in runs]
    evals = [e for m in ms for e in m.evals]
    if not evals:
        ax_bpb.text(0.5, 0.5, "no evaluations logged", ha="center", transform=ax_bpb.transAxes)
    train_loss = [x for m in ms for x in m.loss]
    keep_span(ax_loss, train_loss + [e.val_loss for e in evals])
    keep_span(ax_bpb, [e.val_bpb for e in evals])
    ax_loss.set_ylabel("loss (nats/token)")
    ax_bpb.set_ylabel("val bits/byte")
    ax_lr.set_ylabel("learning rate")
    ax_lr.set_xlabel("step")
    if len(runs) > 1:  # the runs top right, above their curves' ends; the styles bottom left
        ax_loss.add_artist(_run_legend(ax_loss, [run.name for run in runs], colours))
    _style_legend(ax_loss, any(math.isnan(x) for x in train_loss), any(m.resumes for m in ms),
                  "lower left" if len(runs) > 1 else "upper right")  # fmt: skip
    return fig


def _figure() -> Figure:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingDependencyError(
            'minigpt plot needs matplotlib; install it with pip install "minigpt[plot]"'
        ) from e
    fig = Figure(figsize=(9, 9), layout="constrained")
    FigureCanvasAgg(fig)  # render with Agg, whatever backend the process uses
    axes = fig.subplots(3, 1, sharex=True, height_ratios=(2, 1, 1))
    for ax in axes:
        ax.grid(alpha=0.3)
    return fig


def _colours(n: int) -> list[Any]:
    """One colour per run: matplotlib's ten, or evenly spread over a colour map beyond."""
    if n <= 10:
        return [f"C{i}" for i in range(n)]
    from matplotlib import colormaps

    return [colormaps["turbo"](i / (n - 1)) for i in range(n)]


def _draw_run(axes: Sequence[Axes], m: Metrics, colour: Any) -> None:
    """One run's series in its colour: loss and evaluations, bits per byte, LR."""
    ax_loss, ax_bpb, ax_lr = axes
    ax_loss.plot(m.steps, m.loss, lw=1, color=colour)
    skipped = [s for s, loss in zip(m.steps, m.loss, strict=True) if math.isnan(loss)]
    if skipped:  # crosses along the bottom edge, where a non-finite loss was skipped
        ax_loss.plot(skipped, [0.03] * len(skipped), "x", color=colour,
                     transform=ax_loss.get_xaxis_transform())  # fmt: skip
    periodic = [e for e in m.evals if not e.final]
    final = [e for e in m.evals if e.final]
    for ax, key in ((ax_loss, "val_loss"), (ax_bpb, "val_bpb")):
        ax.plot([e.step for e in periodic], [getattr(e, key) for e in periodic], "o--", ms=4,
                lw=1, color=colour)  # fmt: skip
        ax.plot([e.step for e in final], [getattr(e, key) for e in final], "*", ms=12,
                color=colour)  # fmt: skip
    ax_lr.plot(m.steps, m.lr, lw=1, color=colour)
    for ax in axes:
        for step in m.resumes:
            ax.axvline(step, lw=1, ls=":", color=colour)


def keep_span(ax: Axes, values: Sequence[float]) -> None:
    """Widen the y axis, centred on the values, to at least MIN_SPAN or MIN_SPAN_RATIO of
    the largest value, so noise of 0.005 bits is not drawn as a cliff. Never below 0
    for values that are not."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return
    low, high = min(finite), max(finite)
    span = max(MIN_SPAN, MIN_SPAN_RATIO * max(abs(low), abs(high)))
    bottom, top = ax.get_ylim()
    if top - bottom >= span:
        return
    bottom = (low + high - span) / 2
    if low >= 0:
        bottom = max(bottom, 0.0)
    ax.set_ylim(bottom, bottom + span)


def _run_legend(ax: Axes, names: list[str], colours: list[Any]) -> Legend:
    from matplotlib.lines import Line2D

    handles = [Line2D([], [], color=c, lw=2, label=n) for n, c in zip(names, colours, strict=True)]
    return ax.legend(handles=handles, title="run", fontsize="small", loc="upper right")


def _style_legend(ax: Axes, skipped: bool, resumed: bool, loc: str) -> None:
    """Which style is which series (the colours are the runs)."""
    from matplotlib.lines import Line2D

    c = STYLE_COLOUR
    handles = [
        Line2D([], [], lw=1, color=c, label="train loss"),
        Line2D([], [], marker="o", ms=4, lw=1, ls="--", color=c, label="val loss (estimate)"),
        Line2D([], [], marker="*", ms=12, ls="", color=c, label="val loss (whole split)"),
    ]
    if skipped:
        handles.append(Line2D([], [], marker="x", ls="", color=c, label="skipped (non-finite)"))
    if resumed:
        handles.append(Line2D([], [], lw=1, ls=":", color=c, label="resume"))
    ax.legend(handles=handles, fontsize="small", loc=loc)
