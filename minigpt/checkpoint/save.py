"""Writing a snapshot atomically: weights tensor by tensor, then config.json (with the
weights' sha256), tokenizer.json and the training state, in a temporary sibling that
is fsynced and swapped into place."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from minigpt.checkpoint.layout import (
    CHECKPOINT_FORMAT_VERSION,
    CONFIG,
    TOKENIZER,
    TRAIN_STATE,
    TRAIN_STATE_META,
    WEIGHTS,
)
from minigpt.config import GPTConfig
from minigpt.errors import CheckpointError
from minigpt.fileio import (
    PathLike,
    file_sha256,
    fsync_path,
    make_temp_dir,
    swap_dir_into_place,
    write_error_fix,
    write_synced,
)
from minigpt.model import GPT
from minigpt.schema import to_dict
from minigpt.tensorfile import all_finite, write_safetensors
from minigpt.tokenizer.encodings import Tokenizer
from minigpt.tokenizer.files import save_tokenizer

# ---------------------------------------------------------------------------------
# Saving.


def stored_tensors(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The tensors a weights file holds: tied unembedding dropped, wrapper prefixes gone."""
    raw = _raw_model(model)
    tensors = dict(raw.state_dict())
    if raw.config.tie_embeddings:
        del tensors["lm_head.weight"]  # the same matrix as wte.weight
    return tensors


def weights_for_saving(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().cpu().contiguous() for k, v in stored_tensors(model).items()}


def save_checkpoint(
    snapshot_dir: PathLike,
    model: torch.nn.Module,
    tokenizer: Tokenizer,
    extra: dict[str, Any],
    train_state: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> None:
    """Write a snapshot of `model` atomically; `extra` (step, val_loss, ...) goes into
    config.json.

    `train_state` (tensors, JSON object) is written beside the weights for resuming.
    Non-finite weights are refused, so a diverged run never replaces a good snapshot.
    A failed write (disk full, read-only directory) leaves the previous snapshot.
    """
    config = _raw_model(model).config
    save_snapshot(snapshot_dir, config, weights_for_saving(model), tokenizer, extra, train_state)


def save_snapshot(
    snapshot_dir: PathLike,
    config: GPTConfig,
    weights: dict[str, torch.Tensor],
    tokenizer: Tokenizer,
    extra: dict[str, Any],
    train_state: tuple[dict[str, torch.Tensor], dict[str, Any]] | None = None,
) -> None:
    """`save_checkpoint` for weights without a model: `weights` are the tensors a
    weights file holds (`stored_tensors`: a tied unembedding left out), on the CPU."""
    snapshot_dir = Path(snapshot_dir)
    for name, t in weights.items():
        if not all_finite(t):
            raise CheckpointError(
                f"not saving {snapshot_dir}: tensor {name} holds NaN or Inf values; "
                "the previous checkpoint is kept"
            )
    tmp: Path | None = None
    try:
        tmp = make_temp_dir(snapshot_dir)
        write_safetensors(tmp / WEIGHTS, weights)
        meta = {
            "format_version": CHECKPOINT_FORMAT_VERSION,
            "model": to_dict(config),
            "tokenizer": tokenizer.spec(),
            "weights_sha256": file_sha256(tmp / WEIGHTS),
            **extra,
        }
        write_synced(tmp / CONFIG, _json_bytes(meta))
        save_tokenizer(tokenizer, tmp / TOKENIZER)
        if train_state is not None:
            tensors, state_meta = train_state
            write_safetensors(tmp / TRAIN_STATE, tensors)
            state_meta = {
                "format_version": CHECKPOINT_FORMAT_VERSION,
                "step": extra.get("step"),
                "weights_sha256": meta["weights_sha256"],
                "state_sha256": file_sha256(tmp / TRAIN_STATE),
                **state_meta,
            }
            write_synced(tmp / TRAIN_STATE_META, _json_bytes(state_meta))
        for f in tmp.iterdir():
            fsync_path(f)
        fsync_path(tmp)
        swap_dir_into_place(tmp, snapshot_dir)
    except (OSError, SafetensorError) as e:
        reason = getattr(e, "strerror", None) or str(e)
        raise CheckpointError(
            f"could not write the checkpoint {snapshot_dir}: {reason}; "
            f"{write_error_fix(e, 'choose a writable --out')}the previous checkpoint is intact"
        ) from e
    finally:
        if tmp is not None and tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _raw_model(model: torch.nn.Module) -> GPT:
    raw = getattr(model, "_orig_mod", model)  # torch.compile wrapper
    return getattr(raw, "module", raw)  # DistributedDataParallel wrapper


def _json_bytes(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, allow_nan=False) + "\n").encode()
