"""What a training run reports: the records the loop hands to a `Reporter` (the CLI
draws them), and why a run ended early. `metrics` writes the same records to
`metrics.jsonl`, the run's permanent log.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, Protocol

from minigpt.config import GPTConfig


class StopReason(str, Enum):
    """Why a run ended before its step or time limit (the "reason" in metrics.jsonl)."""

    INTERRUPTED = "interrupted"  # Ctrl-C or SIGTERM: saved, continue with --resume
    STOP_AT = "stop_at"  # --stop-at: saved, continue with --resume
    EARLY_STOP = "early_stop"  # --patience ran out: the val loss stopped improving


@dataclass
class RunInfo:
    run_dir: Path
    device: str
    precision: str
    compiled: str
    model: GPTConfig  # the architecture, vocabulary included
    num_params: int
    param_counts: dict[str, int]
    tokens_per_step: int
    train_tokens: int
    val_tokens: int
    world_size: int
    threads: int  # CPU threads torch computes with, in each process
    flops_per_token: int
    peak_flops: float  # measured matmul FLOP/s of one device
    resumed_step: int | None = None
    changes: dict[str, list[Any]] = field(default_factory=dict)  # name -> [old, new]
    warnings: list[str] = field(default_factory=list)
    init_from: dict[str, Any] | None = None  # the model the run started from


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
    stopped: StopReason | None = None  # None: the run reached its limit
    skipped_steps: int = 0


class Reporter(Protocol):
    """What a run shows as it goes. `activity` comes after every step ("train") and
    while the final evaluation runs ("final evaluation 3/12"), with the share done;
    `step` only at logged steps."""

    def start(self, info: RunInfo) -> None: ...
    def activity(self, doing: str, progress: float) -> None: ...
    def step(self, info: StepInfo) -> None: ...
    def eval(self, info: EvalInfo) -> None: ...
    def end(self, result: TrainResult) -> None: ...


class SilentReporter:
    """A Reporter that shows nothing (library use, tests, ranks other than 0)."""

    def start(self, info: RunInfo) -> None: ...
    def activity(self, doing: str, progress: float) -> None: ...
    def step(self, info: StepInfo) -> None: ...
    def eval(self, info: EvalInfo) -> None: ...
    def end(self, result: TrainResult) -> None: ...
