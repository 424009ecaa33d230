"""metrics.jsonl, a run's permanent log: its rows, written while training and read back.

One JSON object per line, each with an integer "step" and the wall-clock "time" it was
written (Unix seconds, to the millisecond):

- events: `{"event": "start", "step": 0, "params": N, "threads": T}` (and
  `"init_from": {"source": ..., "origin": ..., "step": ...}` for a run started from a
  model, whose first evaluation, at step 0, is that model's),
  `{"event": "resume", "step": S, "changes": {name: [old, new]}, "threads": T}` (T: the
  CPU threads torch computed with, in each process),
  `{"event": "stop", "step": S, "reason": "interrupted" | "stop_at" | "early_stop"}`;
- a logged step: loss (null when skipped, then `"skipped": true`), lr, grad_norm,
  tokens_per_s, mfu, elapsed;
- an evaluation: val_loss, val_bpb, and `"final": true` for the whole-split pass.

`MetricsProcessor` decides when a step is logged, measures its throughput and MFU,
stamps and writes the rows (rank 0; to TensorBoard too when asked, the same rows) and
hands the records to the `Reporter`. `read_metrics` parses the file back for
`minigpt plot`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple, Protocol

from minigpt.config import TrainConfig
from minigpt.errors import CheckpointError
from minigpt.fileio import PathLike, open_regular, parse_json, write_atomic
from minigpt.schema import is_int, is_number
from minigpt.training.reporting import EvalInfo, Reporter, RunInfo, StepInfo, StopReason
from minigpt.training.state import TrainState
from minigpt.training.tensorboard import TensorBoardLog

METRICS = "metrics.jsonl"


# ---------------------------------------------------------------------------------
# Rows.


def start_row(
    num_params: int, threads: int, init_from: dict[str, Any] | None = None
) -> dict[str, Any]:
    row = {"event": "start", "step": 0, "params": num_params, "threads": threads}
    return row if init_from is None else {**row, "init_from": init_from}


def resume_row(step: int, changes: dict[str, list[Any]], threads: int) -> dict[str, Any]:
    return {"event": "resume", "step": step, "changes": changes, "threads": threads}


def stop_row(step: int, reason: StopReason) -> dict[str, Any]:
    return {"event": "stop", "step": step, "reason": reason.value}


def step_row(info: StepInfo, grad_norm: float) -> dict[str, Any]:
    """A logged step; non-finite values are written as null, never as NaN."""
    row: dict[str, Any] = {
        "step": info.step,
        "loss": info.loss,
        "lr": info.lr,
        "grad_norm": grad_norm if math.isfinite(grad_norm) else None,
        "tokens_per_s": info.tokens_per_s,
        "mfu": info.mfu,
        "elapsed": round(info.elapsed, 3),
    }
    if info.loss is None:
        row["skipped"] = True
    return row


def eval_row(info: EvalInfo) -> dict[str, Any]:
    row = {"step": info.step, "val_loss": info.val_loss, "val_bpb": info.val_bpb}
    return {**row, "final": True} if info.final else row


# ---------------------------------------------------------------------------------
# Writing.


class RowSink(Protocol):
    """Where the rows go: metrics.jsonl, and TensorBoard with `--tensorboard`."""

    def write(self, row: dict[str, Any]) -> None: ...
    def close(self) -> None: ...


class MetricsLog:
    """metrics.jsonl, open for appending.

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
    with open_regular(path) as f:
        raw = f.read()
    for line in raw.splitlines():
        try:
            row = parse_json(line)
        except ValueError:
            continue  # a line cut short by a crash, or damaged: not part of the story
        if isinstance(row, dict) and isinstance(row.get("step"), int) and row["step"] <= keep_until:
            kept.append(line + b"\n")
    write_atomic(path, b"".join(kept))


class MetricsProcessor:
    """When a step is logged, with its throughput and MFU; rows to metrics.jsonl and, given
    a `tensorboard` directory, as event files there (on the rank that writes), and
    records to the reporter."""

    def __init__(
        self,
        config: TrainConfig,
        reporter: Reporter,
        writes: bool,
        tensorboard: Path | None = None,
    ) -> None:
        self.config, self.reporter, self.writes = config, reporter, writes
        self.tensorboard = tensorboard
        self.sinks: list[RowSink] = []
        self.info: RunInfo | None = None
        self.last_time, self.last_step = 0.0, 0
        self.peak = 0.0  # FLOP/s: the measured peak, or the best a step achieved

    def start(self, info: RunInfo) -> None:
        """Open the log (a resumed run's is cut back to the resumed step) and report."""
        resumed = info.resumed_step
        if self.writes:
            self.sinks.append(MetricsLog(info.run_dir / METRICS, keep_until=resumed))
            if self.tensorboard is not None:
                # a resumed run's events past the resumed step are dropped, as its rows are
                purge = None if resumed is None else resumed + 1
                self.sinks.append(TensorBoardLog(self.tensorboard, purge_step=purge))
            if resumed is None:
                self._write(start_row(info.num_params, info.threads, info.init_from))
            else:
                self._write(resume_row(resumed, info.changes, info.threads))
        self.info = info
        self.reporter.start(info)
        self.last_time, self.last_step = time.perf_counter(), resumed or 0

    def _write(self, row: dict[str, Any]) -> None:
        """A row, stamped with the wall-clock time, to every sink."""
        stamped = {**row, "time": round(time.time(), 3)}
        for sink in self.sinks:
            sink.write(stamped)

    def should_log(self, step: int, progress: float, ok: bool) -> bool:
        """Every log_interval steps, the last step, and every skipped step."""
        return step % self.config.log_interval == 0 or progress >= 1.0 or not ok

    def log_step(
        self, state: TrainState, loss: float | None, lr: float, grad_norm: float, progress: float
    ) -> None:
        """Log the step just taken (`loss` None: it was skipped)."""
        tokens_per_s, mfu = self._throughput(state.step)
        info = StepInfo(
            state.step, loss, lr, tokens_per_s, mfu, state.elapsed, min(progress, 1.0),
            state.skipped_steps,
        )  # fmt: skip
        self._write(step_row(info, grad_norm))
        self.reporter.step(info)

    def _throughput(self, step: int) -> tuple[float, float]:
        """(tokens/s, model FLOPs utilisation) since the last logged step."""
        if self.info is None:
            raise RuntimeError("MetricsProcessor.start() must come first")
        now = time.perf_counter()
        tokens = (step - self.last_step) * self.info.tokens_per_step
        tokens_per_s = tokens / max(now - self.last_time, 1e-9)
        self.last_time, self.last_step = now, step
        # The start-up measurement of the peak can come out low (the machine was busy
        # then); a step that beats it raises it, so MFU never shows above 100%.
        achieved = self.info.flops_per_token * tokens_per_s
        self.peak = max(self.peak, self.info.peak_flops * self.info.world_size, achieved)
        return tokens_per_s, achieved / self.peak

    def final_eval_progress(self, done: int, total: int) -> None:
        """Tell the reporter how far the final evaluation has come (it may take a while)."""
        self.reporter.activity(f"final evaluation {done}/{total}", 1.0)

    def log_eval(self, info: EvalInfo) -> None:
        self._write(eval_row(info))
        self.reporter.eval(info)

    def log_stop(self, step: int, reason: StopReason) -> None:
        self._write(stop_row(step, reason))

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()


# ---------------------------------------------------------------------------------
# Reading.


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
    damaged: list[int] = field(default_factory=list)  # numbers of the lines skipped


def find_metrics(path: PathLike) -> Path:
    """The metrics.jsonl of a run directory, of a snapshot in it, or the file itself."""
    path = Path(path)
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


def newest_metrics(root: PathLike) -> Path:
    """The metrics.jsonl under `root` (e.g. ./checkpoints) written last: the newest run,
    even one still training towards its first save."""
    root = Path(root)
    found = [p for p in root.glob(f"*/{METRICS}") if p.is_file()]
    if not found:
        raise CheckpointError(
            f"no run under {root}/ (no {root}/<run>/{METRICS}); train one with `minigpt "
            "train data/shakespeare.txt`, or give a run directory"
        )
    return max(found, key=lambda p: (p.stat().st_mtime_ns, str(p)))


def read_metrics(path: PathLike) -> Metrics:
    """Parse metrics.jsonl. A damaged line (not JSON, not UTF-8, nested too deeply, not a
    row, a value that is not a number) is skipped and its number kept in `damaged`; a
    last line cut short by a crash or still being written is skipped without a word.
    Unknown keys and events other than "resume" are ignored."""
    path = Path(path)
    with open_regular(path) as f:
        raw = f.read()
    lines = [(n, line) for n, line in enumerate(raw.splitlines(), 1) if line.strip()]
    steps: dict[int, tuple[float, float]] = {}
    evals: dict[tuple[int, bool], tuple[float, float]] = {}
    resumes: set[int] = set()
    damaged: list[int] = []
    for n, line in lines:
        try:
            row = parse_json(line)
        except ValueError:  # not JSON, not UTF-8, or nested too deeply
            if n != lines[-1][0]:
                damaged.append(n)
            continue
        if not isinstance(row, dict) or not is_int(row.get("step")):
            damaged.append(n)
            continue
        step = row["step"]
        if "event" in row:
            if row["event"] == "resume":
                resumes.add(step)
        elif "val_loss" in row:
            values = _nums(row, "val_loss", "val_bpb")
            if values is None:
                damaged.append(n)
            else:
                evals[step, bool(row.get("final"))] = values
        elif "loss" in row:
            values = _nums(row, "loss", "lr")
            if values is None:
                damaged.append(n)
            else:
                steps[step] = values
    if not steps:
        raise CheckpointError(f"{path} has no training steps logged yet")
    ordered = sorted(steps.items())
    return Metrics(
        steps=[s for s, _ in ordered],
        loss=[loss for _, (loss, _) in ordered],
        lr=[lr for _, (_, lr) in ordered],
        evals=[Eval(s, *values, final) for (s, final), values in sorted(evals.items())],
        resumes=sorted(resumes),
        damaged=damaged,
    )


def _nums(row: dict[str, Any], *keys: str) -> tuple[float, float] | None:
    """row's two values as floats (null or missing: nan, a skipped step or an unlogged
    value); None when one is not a number."""
    values = [row.get(key) for key in keys]
    if not all(v is None or is_number(v) for v in values):
        return None
    a, b = (math.nan if v is None else float(v) for v in values)
    return a, b
