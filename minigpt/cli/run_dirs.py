"""A training run's directory as `minigpt train` handles it: its name, the lock that
allows one writer, the checks before a run starts in it or continues it, and what is
left of it after an interrupt before the first save.

A new run's directory is made by the run itself (its metrics.jsonl is the first thing
written). When a run is interrupted twice before its first checkpoint, that log is all
there is: `minigpt.training.runs.discard_unsaved_run` removes it, and the directory
when this run made it, so an interrupted start leaves nothing behind (anything else in
the directory is kept).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from minigpt.checkpoint import LATEST
from minigpt.config import DataConfig
from minigpt.errors import ConfigError
from minigpt.fileio import LockedError, exclusive, hidden_name, parked
from minigpt.training import distributed
from minigpt.training.checkpointer import check_replaceable_snapshots
from minigpt.training.metrics import METRICS
from minigpt.training.runs import never_saved


@contextmanager
def run_lock(run_dir: Path, ctx: distributed.DistContext) -> Iterator[None]:
    """One writer per run: rank 0 holds an OS lock on the run for the whole training, and
    every rank stops with one line when another process has it."""
    with ExitStack() as held:
        problem = ""
        if ctx.is_main:
            try:
                held.enter_context(exclusive(hidden_name(run_dir, "lock"), f"pid {os.getpid()}"))
            except LockedError as e:
                problem = (
                    f"run {run_dir} is in use by another minigpt train ({e.holder or 'a process'}"
                    "); wait for it to end or stop it, or train another --run"
                )
        problem = distributed.broadcast_text(problem, ctx)
        if problem:
            raise ConfigError(problem)
        yield


def run_dir_of(snapshot: Path) -> Path:
    """The run a resumed snapshot belongs to: the directory holding it as latest/ beside
    the run's metrics.jsonl. A snapshot anywhere else never makes its parent a run."""
    run_dir = snapshot.parent
    if snapshot.name in (LATEST, parked(run_dir / LATEST).name) and (run_dir / METRICS).is_file():
        check_replaceable_snapshots(run_dir)
        return run_dir
    raise ConfigError(
        f"{snapshot} is a snapshot outside a run directory, so there is no run to continue "
        "in place; resume the run directory it came from (the one with metrics.jsonl)"
    )


def safe_name(text: str, limit: int = 48) -> str:
    """A piece of a default run name: letters, digits, '.', '_' and '-' only, cut short."""
    kept = "".join(c if c.isalnum() or c in "._-" else "_" for c in text)  # no surrogates
    return kept[:limit].strip(".") or "run"


def new_run_dir(
    file: Path,
    run: str | None,
    out: Path,
    data: DataConfig,
    ctx: distributed.DistContext,
    label: str | None = None,
) -> Path:
    """out/<run>; rank 0 picks the name for every rank: by default the file's name, the
    `label` (the tokenizer's kind unless given) and the time."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    named = file if file.name not in ("", "..") else file.resolve()  # "." has no name
    default = f"{safe_name(named.stem)}-{safe_name(label or data.tokenizer)}-{stamp}"
    name = distributed.broadcast_text(run or default, ctx)
    return out / name


def check_new_run_dir(run_dir: Path, ctx: distributed.DistContext) -> None:
    """A new run's directory must not exist yet (checked under the run's lock)."""
    problem = ""
    if ctx.is_main and never_saved(run_dir):
        (run_dir / METRICS).unlink()  # the log of a start that failed: this run starts over
    if ctx.is_main and run_dir.exists() and any(run_dir.iterdir()):
        problem = (
            f"run directory {run_dir} already exists; choose another --run name, or add "
            "--resume to continue it"
        )
    problem = distributed.broadcast_text(problem, ctx)  # every rank stops with one line
    if problem:
        raise ConfigError(problem)
