"""A run's loss curves as a PNG: read `metrics.jsonl`, draw loss, bits per byte and LR.

matplotlib is optional (`pip install "minigpt[plot]"`) and imported only when drawing.
The figure is rendered on an Agg canvas of its own, so no window ever opens and the
caller's matplotlib backend is left alone.
"""

from __future__ import annotations

import io
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

from minigpt.errors import CheckpointError, ConfigError, MissingDependencyError
from minigpt.fileio import write_atomic

METRICS = "metrics.jsonl"


class Eval(NamedTuple):
    step: int
    val_loss: float
    val_bpb: float
    final: bool  # a pass over the whole validation split at the end of training


@dataclass
class Metrics:
    """The rows of one metrics.jsonl, sorted by step; a repeated step keeps its last row."""

    steps: list[int] = field(default_factory=list)
    loss: list[float] = field(default_factory=list)  # nan where the step was skipped
    lr: list[float] = field(default_factory=list)
    evals: list[Eval] = field(default_factory=list)
    resumes: list[int] = field(default_factory=list)


def find_metrics(path: Path) -> Path:
    """The metrics.jsonl of a run directory, of a snapshot in it, or the file itself."""
    if not path.exists():
        raise CheckpointError(
            f"{path} does not exist; give a run directory such as checkpoints/<run>"
        )
    if path.is_file():
        return path
    for candidate in (path / METRICS, path.parent / METRICS):
        if candidate.is_file():
            return candidate
    raise CheckpointError(f"no {METRICS} in {path}; give a run directory such as checkpoints/<run>")


def read_metrics(path: Path) -> Metrics:
    """Parse metrics.jsonl. A last line cut short by a crash is ignored; any other bad line
    is an error naming it. Unknown keys and events other than "resume" are ignored."""
    text = path.read_text(encoding="utf-8")
    lines = [(n, line) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
    steps: dict[int, tuple[float, float]] = {}
    evals: dict[tuple[int, bool], tuple[float, float]] = {}
    resumes: set[int] = set()
    for n, line in lines:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            if n == lines[-1][0]:
                break
            raise CheckpointError(f"{path} line {n} is not valid JSON") from None
        if not isinstance(row, dict) or not _is_number(row.get("step"), int):
            raise CheckpointError(f"{path} line {n} is not a metrics row (no integer step)")
        step = row["step"]
        if "event" in row:
            if row["event"] == "resume":
                resumes.add(step)
        elif "val_loss" in row:
            evals[step, bool(row.get("final"))] = (
                _num(row, "val_loss", path, n),
                _num(row, "val_bpb", path, n),
            )
        elif "loss" in row:
            steps[step] = (_num(row, "loss", path, n), _num(row, "lr", path, n))
    if not steps:
        raise CheckpointError(f"{path} has no training steps logged yet")
    ordered = sorted(steps.items())
    return Metrics(
        steps=[s for s, _ in ordered],
        loss=[loss for _, (loss, _) in ordered],
        lr=[lr for _, (_, lr) in ordered],
        evals=[Eval(s, *values, final) for (s, final), values in sorted(evals.items())],
        resumes=sorted(resumes),
    )


def _is_number(value: Any, kind: type | tuple[type, ...] = (int, float)) -> bool:
    return isinstance(value, kind) and not isinstance(value, bool)


def _num(row: dict[str, Any], key: str, path: Path, n: int) -> float:
    """row[key] as a float; null or missing is nan (a skipped step, an unlogged value)."""
    value = row.get(key)
    if value is None:
        return math.nan
    if not _is_number(value):
        raise CheckpointError(f"{path} line {n}: {key} is {value!r}, not a number")
    return float(value)


def plot_run(metrics_path: Path, out_path: Path) -> Path:
    """Draw the run's train/val loss, val bits per byte and learning rate; returns out_path."""
    if out_path.suffix.lower() != ".png":
        raise ConfigError(f"--out {out_path} must be a .png file")
    m = read_metrics(metrics_path)
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
    fig.suptitle(metrics_path.parent.resolve().name)
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
