"""Checkpoints: safetensors for tensors, JSON for everything else.

A run directory `checkpoints/<run>/` holds `metrics.jsonl` and snapshot directories:
`latest/` (rewritten every --save-every steps) and `best/` (the lowest val loss so
far). A snapshot holds `model.safetensors` (tied weights stored once, no `_orig_mod.` /
`module.` prefixes), `config.json` and `tokenizer.json`; `latest/` also holds
`train_state.safetensors` and `train_state.json` for an exact resume. A snapshot is
written to a temporary sibling directory, fsynced, then renamed into place, so a crash
at any moment leaves the previous snapshot intact: a reader sees the old one or the
new one, never a mix (the JSON files record the sha256 of the tensor files they go
with). `read_snapshot` reads a snapshot once and verifies every file of it;
`load_checkpoint` builds a model from what it read. Nothing here unpickles.

`layout` names the files and finds snapshots, `save` writes them, `read` reads and
verifies them; this package exports what callers use.
"""

from minigpt.checkpoint.layout import (
    BEST,
    CHECKPOINT_FORMAT_VERSION,
    CONFIG,
    LATEST,
    TOKENIZER,
    TRAIN_STATE,
    TRAIN_STATE_META,
    WEIGHTS,
    Checkpoint,
    SavedTrainState,
    Snapshot,
    find_latest_checkpoint,
    is_snapshot,
    resolve_snapshot,
)
from minigpt.checkpoint.read import (
    load_checkpoint,
    load_weights,
    load_weights_into,
    read_meta,
    read_snapshot,
    weights_only_error,
)
from minigpt.checkpoint.save import save_checkpoint, save_snapshot, stored_tensors

__all__ = [
    "BEST", "CHECKPOINT_FORMAT_VERSION", "CONFIG", "LATEST", "TOKENIZER", "TRAIN_STATE",
    "TRAIN_STATE_META", "WEIGHTS", "Checkpoint", "SavedTrainState", "Snapshot",
    "find_latest_checkpoint", "is_snapshot", "load_checkpoint", "load_weights",
    "load_weights_into", "read_meta", "read_snapshot", "resolve_snapshot", "save_checkpoint",
    "save_snapshot", "stored_tensors", "weights_only_error",
]  # fmt: skip
