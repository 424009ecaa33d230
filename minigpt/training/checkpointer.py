"""A run's snapshots: when `latest/` is saved, what it holds, `best/`, and the exact
restore of a saved run.

`latest/` is saved every `save_every` steps (at each evaluation by default) and when
a run stops, with everything an exact resume needs: every rank's RNG states are
gathered, rank 0 writes. `best/` holds the weights with the lowest val loss. A resume
restores the weights into the model being trained, then the optimizer's moments, the
RNGs, the gradient scaler and the counters. It may change training settings (they are
reported; another --optimizer starts without moments), never the model's shape or
the tokenizer. Each snapshot records the autocast precision it was trained in and the
kind of device; `--precision auto` keeps it on the same kind of device
(`minigpt.training.precision`), and a resume that trains in another (another kind of
device, or an explicit `--precision`) reports that as a change of `autocast`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minigpt.checkpoint import (
    BEST,
    LATEST,
    Snapshot,
    load_weights_into,
    save_checkpoint,
    weights_only_error,
)
from minigpt.config import GPTConfig, TrainConfig
from minigpt.data.dataset import Dataset
from minigpt.errors import CheckpointError, ConfigError, MinigptError
from minigpt.schema import from_dict, to_dict
from minigpt.training.distributed import all_gather
from minigpt.training.optim import run_progress
from minigpt.training.precision import recorded_precision
from minigpt.training.runs import recorded_identity
from minigpt.training.setup import Setup
from minigpt.training.state import (
    TrainState,
    optimizer_tensors,
    python_random_state,
    restore_optimizer,
    restore_python_random,
    restore_rng,
    rng_tensors,
    state_from_json,
)

Val = tuple[float, float]  # (val loss in nats per token, bits per byte)
# Settings of the machine a process runs on, not of the run: a resume that changes them
# is no change to report (metrics.jsonl's resume row records the threads in use).
MACHINE_SETTINGS = ("threads",)


@dataclass
class Resumed:
    """Where a restored run continues from."""

    step: int  # the step the run continues from
    state: TrainState  # its counters, from then on the live ones
    changes: dict[str, list[Any]]  # setting -> [saved, now], for settings that changed
    last_val: Val | None  # the val figures the snapshot was saved with


class Checkpointer:
    """Saves and restores the snapshots of one run."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup

    def is_due(self, step: int, progress: float) -> bool:
        """Every save_every steps (every eval_interval by default), before the end."""
        cfg = self.setup.config
        return step % (cfg.save_every or cfg.eval_interval) == 0 and progress < 1.0

    def save_latest(self, state: TrainState, val: Val | None) -> None:
        """Write latest/ with the training state. Every rank calls it (each rank's RNG
        state is gathered); rank 0 writes."""
        s = self.setup
        cpu_states = all_gather(torch.get_rng_state(), s.ctx)
        cuda_states = None
        if s.device.type == "cuda":
            cuda_states = all_gather(torch.cuda.get_rng_state(s.device), s.ctx)
        if not s.ctx.is_main:
            return
        state.scaler = s.scaler.state_dict() if s.scaler is not None else None
        state.python_random = python_random_state()
        tensors = optimizer_tensors(s.model, s.optimizer)
        tensors.update(rng_tensors(cpu_states, cuda_states, s.data_gen))
        save_checkpoint(
            s.run_dir / LATEST,
            s.model,
            s.dataset.tokenizer,
            self._extra(state, val),
            train_state=(tensors, {"state": state.to_json()}),
        )

    def save_best(self, state: TrainState, val: Val) -> None:
        """Write best/ (weights only); rank 0 only, the others return at once."""
        s = self.setup
        if s.ctx.is_main:
            save_checkpoint(s.run_dir / BEST, s.model, s.dataset.tokenizer, self._extra(state, val))

    def _extra(self, state: TrainState, val: Val | None) -> dict[str, Any]:
        val_loss, val_bpb = val or (None, None)
        return {
            "step": state.step,
            "val_loss": val_loss,
            "val_bpb": val_bpb,
            "train": to_dict(self.setup.config),
            "autocast": self.setup.precision.name,  # what --precision chose (auto: measured)
            "autocast_device": self.setup.device.type,  # what it was chosen for
            "dataset": self.setup.dataset.meta,
            "init_from": self.setup.init_from,
        }

    def restore(self, snapshot: Snapshot) -> Resumed:
        """Load the weights, optimizer, RNGs and counters of a snapshot."""
        saved, state, tensors = self._saved_run(snapshot)
        s, rank = self.setup, self.setup.ctx.rank
        load_weights_into(s.model, snapshot.weights)
        if saved.optimizer == s.config.optimizer:  # another optimizer starts afresh
            restore_optimizer(s.model, s.optimizer, tensors)
        if not restore_rng(tensors, rank, s.data_gen, s.device):
            torch.manual_seed(s.config.seed + 1 + rank + state.step)
        restore_python_random(state.python_random)
        if s.scaler is not None and state.scaler is not None:
            s.scaler.load_state_dict(state.scaler)
        old, new = to_dict(saved), to_dict(s.config)
        changes = {
            k: [old[k], new[k]] for k in old if old[k] != new[k] and k not in MACHINE_SETTINGS
        }
        trained_in = recorded_precision(snapshot.meta)
        if trained_in is not None and trained_in != s.precision.name:
            changes["autocast"] = [trained_in, s.precision.name]
        if state.world_size != s.ctx.world_size:
            changes["processes"] = [state.world_size, s.ctx.world_size]
            state.world_size = s.ctx.world_size
        val_loss, val_bpb = snapshot.meta.get("val_loss"), snapshot.meta.get("val_bpb")
        last_val = (val_loss, val_bpb) if val_loss is not None and val_bpb is not None else None
        return Resumed(state.step, state, changes, last_val)

    def _saved_run(
        self, snapshot: Snapshot
    ) -> tuple[TrainConfig, TrainState, dict[str, torch.Tensor]]:
        """The saved training settings, counters and state tensors; the run unfinished."""
        if snapshot.train_state is None:
            raise weights_only_error(snapshot.path)
        where = str(snapshot.path)
        try:
            saved = from_dict(TrainConfig, snapshot.meta.get("train"), where=where)
        except MinigptError as e:
            raise CheckpointError(str(e)) from e
        state = state_from_json(snapshot.train_state.meta.get("state"), where)
        if run_progress(state.step, state.elapsed, self.setup.config, state.time_reserve or 0) >= 1:
            raise ConfigError(
                f"the run in {snapshot.path.parent} already finished (step {state.step}); "
                "give a larger --max-iters or --time to train it further"
            )
        return saved, state, snapshot.train_state.tensors


def check_same_run(snapshot: Snapshot, model_config: GPTConfig, dataset: Dataset) -> None:
    """A resumed run keeps its model shape and its tokenizer; say what differs."""
    spec = snapshot.meta.get("tokenizer")
    if spec != dataset.tokenizer.spec():
        kind = spec.get("kind", "?") if isinstance(spec, dict) else "?"
        size = spec.get("vocab_size", "?") if isinstance(spec, dict) else "?"
        trained_on = recorded_identity(snapshot.meta)
        if trained_on is not None and trained_on.sha256 != dataset.meta.get("source_sha256"):
            raise ConfigError(
                f"the run was trained on other text ({snapshot.meta['dataset'].get('source')}) "
                f"with a {kind} tokenizer of {size} tokens, and {dataset.meta.get('source')} "
                "gives another tokenizer; resume with the text the run was trained on"
            )
        raise ConfigError(
            f"the checkpoint was trained with another tokenizer ({kind}, {size} tokens) than "
            "this dataset's; resume with the same text file and tokenizer options"
        )
    old, new = to_dict(snapshot.config), to_dict(model_config)
    diff = [f"{k} {old[k]!r} -> {new[k]!r}" for k in new if old[k] != new[k]]
    if diff:
        raise ConfigError(
            f"cannot resume with a different model ({', '.join(diff)}); drop the shape "
            "options to continue the saved model, or start a new run"
        )


def check_replaceable_snapshots(run_dir: Path) -> None:
    """Refuse, before training, a run whose latest/ or best/ is a symbolic link: each
    save replaces the directory, and minigpt will not write through a link."""
    for name in (LATEST, BEST):
        if (run_dir / name).is_symlink():
            raise CheckpointError(
                f"{run_dir / name} is a symbolic link; every save replaces {name}/, so make "
                f"it a real directory (e.g. cp -rL it into place) and resume again"
            )
