"""What a snapshot is on disk: its file names and format version, the records a read
returns, and finding snapshots (a snapshot or run directory, the newest one under a
root)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minigpt.config import GPTConfig
from minigpt.errors import CheckpointError
from minigpt.fileio import PathLike, parked
from minigpt.model import GPT
from minigpt.tokenizer.encodings import Tokenizer

CHECKPOINT_FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CONFIG = "config.json"
TOKENIZER = "tokenizer.json"
TRAIN_STATE = "train_state.safetensors"
TRAIN_STATE_META = "train_state.json"
LATEST = "latest"
BEST = "best"
MAX_CONFIG_BYTES = 1 << 20  # a config.json is a few KB; refuse to parse megabytes
READ_TRIES = 20  # reads of a snapshot that keeps being replaced meanwhile
WRAPPER_PREFIXES = ("_orig_mod.", "module.")  # added by torch.compile and by DDP


@dataclass
class Checkpoint:
    """A loaded snapshot: the model (eval mode), its tokenizer and the saved metadata."""

    path: Path
    model: GPT
    tokenizer: Tokenizer
    meta: dict[str, Any]  # the whole config.json

    @property
    def config(self) -> GPTConfig:
        return self.model.config


@dataclass(frozen=True)
class SavedTrainState:
    """A snapshot's training state: train_state.json and train_state.safetensors."""

    meta: dict[str, Any]  # the whole train_state.json ("state": the counters)
    tensors: dict[str, torch.Tensor]  # optimizer moments and RNG states, by name


@dataclass(frozen=True)
class Snapshot:
    """A snapshot read from disk and verified (`read_snapshot`); no model built yet."""

    path: Path  # the snapshot directory
    meta: dict[str, Any]  # the whole config.json
    config: GPTConfig  # its model settings, complete
    tokenizer: Tokenizer
    weights: dict[str, torch.Tensor]  # on the CPU, checked against config's tensor schema
    train_state: SavedTrainState | None = None  # when asked for (latest/ has one)


# ---------------------------------------------------------------------------------
# Finding snapshots.


def is_snapshot(path: PathLike) -> bool:
    path = Path(path)
    return (path / CONFIG).is_file() and (path / WEIGHTS).is_file()


def resolve_snapshot(path: PathLike) -> Path:
    """A snapshot directory from a snapshot or run directory path."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if not path.is_dir():
        raise CheckpointError(f"{path} is not a checkpoint directory; pass the run's directory")
    for candidate in (path, path / LATEST, parked(path / LATEST), path / BEST):
        if is_snapshot(candidate):
            return candidate
    if (path / "metrics.jsonl").is_file():
        raise CheckpointError(
            f"{path} holds no checkpoint: its run stopped before the first save; "
            "start it again (without --resume)"
        )
    raise CheckpointError(
        f"{path} is not a minigpt checkpoint (no {CONFIG} and {WEIGHTS}); "
        "pass a directory written by `minigpt train`"
    )


def find_latest_checkpoint(root: PathLike) -> Path:
    """The most recently written snapshot below `root` (e.g. ./checkpoints)."""
    root = Path(root)
    found = [p.parent for p in root.glob(f"*/{LATEST}/{CONFIG}") if is_snapshot(p.parent)]
    found += [p.parent for p in root.glob(f"*/{CONFIG}") if is_snapshot(p.parent)]
    found += [  # a run whose latest/ is gone still has its best weights
        p.parent for p in root.glob(f"*/{BEST}/{CONFIG}")
        if is_snapshot(p.parent) and not is_snapshot(p.parent.parent / LATEST)
    ]  # fmt: skip
    if not found:
        raise CheckpointError(
            f"no checkpoint under {root}/; train one with `minigpt train data/shakespeare.txt` "
            "or pass --checkpoint DIR"
        )
    return max(found, key=lambda p: (p / CONFIG).stat().st_mtime_ns)
