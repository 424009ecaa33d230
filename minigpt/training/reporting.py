"""What a training run reports: the records the loop hands to a `Reporter` (the CLI
draws them) and `metrics.jsonl`, the run's permanent log.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from minigpt.fileio import write_atomic


@dataclass
class RunInfo:
    run_dir: Path
    device: str
    precision: str
    compiled: str
    num_params: int
    param_counts: dict[str, int]
    tokens_per_step: int
    train_tokens: int
    val_tokens: int
    world_size: int
    flops_per_token: int
    peak_flops: float  # measured matmul FLOP/s of one device
    resumed_step: int | None = None
    changes: dict[str, list[Any]] = field(default_factory=dict)  # name -> [old, new]
    warnings: list[str] = field(default_factory=list)


@dataclass
class StepInfo:
    step: int
    loss: float | None  # None when the step was skipped
    lr: float
    tokens_per_s: float
    mfu: float  # model FLOPs utilisation, 0..1
    elapsed: float
    progress: float  # share of the run done, 0..1
    skipped_steps: int  # in the whole run so far


@dataclass
class EvalInfo:
    step: int
    val_loss: float
    val_bpb: float
    final: bool = False  # the full pass over the validation split at the end
    best: bool = False  # the lowest val loss so far (saved to best/)
    sample: str | None = None  # a short generation, every sample_every evaluations


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    elapsed: float
    val_loss: float | None
    val_bpb: float | None
    tokens_per_s: float
    stopped: str | None = None  # INTERRUPTED, STOP_AT, EARLY_STOP or None (ran to the end)
    skipped_steps: int = 0


class Reporter(Protocol):
    def start(self, info: RunInfo) -> None: ...
    def step(self, info: StepInfo) -> None: ...
    def eval(self, info: EvalInfo) -> None: ...
    def end(self, result: TrainResult) -> None: ...


class SilentReporter:
    """A Reporter that shows nothing (library use, tests, ranks other than 0)."""

    def start(self, info: RunInfo) -> None: ...
    def step(self, info: StepInfo) -> None: ...
    def eval(self, info: EvalInfo) -> None: ...
    def end(self, result: TrainResult) -> None: ...


class MetricsLog:
    """metrics.jsonl: one JSON object per logged step, evaluation or event.

    On resume, rows past the resumed step (written after the checkpoint, before the
    stop) are dropped, so the file always tells one continuous story.
    """

    def __init__(self, path: Path, keep_until: int | None = None) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if keep_until is not None and path.exists():
            _truncate_metrics(path, keep_until)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def _truncate_metrics(path: Path, keep_until: int) -> None:
    kept = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except ValueError:
            continue  # a line cut short by a crash
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= keep_until:
            kept.append(line + "\n")
    write_atomic(path, "".join(kept).encode("utf-8"))
