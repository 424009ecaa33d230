"""Reading a snapshot once and verifying every file of it (`read_snapshot`), and building
a model from what was read (`load_checkpoint`)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from minigpt.checkpoint.layout import (
    CHECKPOINT_FORMAT_VERSION,
    CONFIG,
    MAX_CONFIG_BYTES,
    READ_TRIES,
    TOKENIZER,
    TRAIN_STATE,
    TRAIN_STATE_META,
    WEIGHTS,
    WRAPPER_PREFIXES,
    Checkpoint,
    SavedTrainState,
    Snapshot,
    resolve_snapshot,
)
from minigpt.checkpoint.save import stored_tensors
from minigpt.config import GPTConfig
from minigpt.errors import CheckpointError, MinigptError, TokenizerError
from minigpt.fileio import PathLike, file_sha256, load_json_object
from minigpt.model import GPT
from minigpt.schema import from_dict
from minigpt.tensorfile import all_finite
from minigpt.tokenizer.files import load_tokenizer


def read_meta(snapshot: PathLike) -> dict[str, Any]:
    """config.json of a snapshot, parsed strictly (no NaN, bounded size)."""
    return _read_json(Path(snapshot) / CONFIG)


def _read_json(file: Path) -> dict[str, Any]:
    """A snapshot's JSON file: an object of bounded size, no NaN, a known format."""
    meta = load_json_object(file, MAX_CONFIG_BYTES, CheckpointError)
    if meta.get("format_version") != CHECKPOINT_FORMAT_VERSION:
        raise CheckpointError(
            f"{file}: unknown format_version {meta.get('format_version')!r} "
            f"(this minigpt reads {CHECKPOINT_FORMAT_VERSION})"
        )
    return meta


def read_snapshot(path: PathLike, *, train_state: bool = False) -> Snapshot:
    """Read a snapshot (or a run directory's latest one) once, and verify all of it.

    config.json (its model settings valid), tokenizer.json (the one config.json names),
    model.safetensors (the file config.json recorded, with the model's exact tensor
    schema) and, with `train_state`, the training state an exact resume needs. No
    model is built: `load_checkpoint` builds one to generate, training loads the
    weights into the model it trains.

    A snapshot that a training process replaces while it is read is read again: the
    reader gets the old snapshot or the new one, whole, never a mix.
    """
    for attempt in range(READ_TRIES):
        snapshot = resolve_snapshot(path)
        before = _identity(snapshot)
        try:
            found = _read_snapshot_once(snapshot, train_state)
        except (CheckpointError, OSError):
            if _identity(snapshot) == before or attempt == READ_TRIES - 1:
                raise  # not a snapshot being replaced: the error stands
        else:
            if _identity(snapshot) == before:
                return found
        time.sleep(0.01 * attempt)  # let the writer finish its swap
    raise CheckpointError(f"{path} was replaced {READ_TRIES} times while being read; try again")


def _identity(snapshot: Path) -> tuple[int, int] | None:
    """Which directory is at this path now: a writer's swap puts another one there."""
    try:
        st = snapshot.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _read_snapshot_once(snapshot: Path, train_state: bool) -> Snapshot:
    meta = read_meta(snapshot)
    config = _model_config(meta, snapshot)
    try:
        tokenizer = load_tokenizer(snapshot / TOKENIZER, expected_vocab_size=config.vocab_size)
    except TokenizerError as e:
        raise CheckpointError(str(e)) from e
    if meta.get("tokenizer") != tokenizer.spec():
        raise CheckpointError(f"{snapshot}: {TOKENIZER} is not the tokenizer named in {CONFIG}")
    if meta.get("weights_sha256") != file_sha256(snapshot / WEIGHTS):
        raise CheckpointError(
            f"{snapshot}: {WEIGHTS} is not the file this {CONFIG} was saved with "
            "(copied from another run, or damaged)"
        )
    state = _read_train_state(snapshot, meta) if train_state else None
    weights = load_weights(snapshot, config)
    return Snapshot(snapshot, meta, config, tokenizer, weights, state)


# GPTConfig fields added after format_version 1 was fixed, with the value a config.json
# written before them means: such a file still loads, as the model it always described.
ADDED_MODEL_FIELDS: dict[str, Any] = {"n_kv_head": None}  # no grouped-query attention


def _model_config(meta: dict[str, Any], snapshot: Path) -> GPTConfig:
    """config.json's model settings: a valid and complete shape, or the reason why not."""
    where = f"{snapshot / CONFIG} 'model'"
    model = meta.get("model")
    if isinstance(model, dict):
        model = {**ADDED_MODEL_FIELDS, **model}
    try:
        config = from_dict(GPTConfig, model, where=where)
    except MinigptError as e:
        raise CheckpointError(str(e)) from e
    if config.vocab_size is None:
        raise CheckpointError(f"{where}: vocab_size is null; a saved model has its vocabulary")
    return config


def _read_train_state(snapshot: Path, meta: dict[str, Any]) -> SavedTrainState:
    """train_state.json and train_state.safetensors of a snapshot, checked to belong to
    its weights (same step, recorded sha256 of both tensor files)."""
    if not (snapshot / TRAIN_STATE_META).is_file() or not (snapshot / TRAIN_STATE).is_file():
        raise weights_only_error(snapshot)
    state = _read_json(snapshot / TRAIN_STATE_META)
    if state.get("step") != meta.get("step") or state.get("weights_sha256") != meta.get(
        "weights_sha256"
    ):
        raise CheckpointError(f"{snapshot}: {TRAIN_STATE_META} is from another save than {CONFIG}")
    if state.get("state_sha256") != file_sha256(snapshot / TRAIN_STATE):
        raise CheckpointError(
            f"{snapshot}: {TRAIN_STATE} is not the file {TRAIN_STATE_META} was saved with"
        )
    return SavedTrainState(state, _load_safetensors(snapshot / TRAIN_STATE))


def weights_only_error(snapshot: Path) -> CheckpointError:
    """The error for resuming from a snapshot without a training state (e.g. best/)."""
    return CheckpointError(
        f"{snapshot} holds weights only, no training state to resume from; "
        "resume from the run directory (its latest/ snapshot)"
    )


def _load_safetensors(file: Path) -> dict[str, torch.Tensor]:
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{file} is not a valid safetensors file: {e}") from e


def load_weights(snapshot: Path, config: GPTConfig) -> dict[str, torch.Tensor]:
    """The snapshot's tensors, checked against the model's exact tensor schema."""
    file = snapshot / WEIGHTS
    tensors = _load_safetensors(file)
    with torch.device("meta"):
        expected = stored_tensors(GPT(config))  # names, shapes, dtypes; no memory
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    for prefix in WRAPPER_PREFIXES:
        if any(name.startswith(prefix) for name in extra):
            raise CheckpointError(
                f"{file} has tensor names with the {prefix!r} prefix a training wrapper adds "
                f"(e.g. {next(n for n in extra if n.startswith(prefix))}); minigpt saves "
                "weights without it: strip the prefix from the names"
            )
    if missing:
        raise CheckpointError(f"{file} lacks tensor {missing[0]} (and {len(missing) - 1} more)")
    if extra:
        raise CheckpointError(f"{file} has unexpected tensor {extra[0]}")
    for name, want in expected.items():
        got = tensors[name]
        if got.shape != want.shape or got.dtype != want.dtype:
            raise CheckpointError(
                f"{file}: tensor {name} is {got.dtype} {tuple(got.shape)}, "
                f"expected {want.dtype} {tuple(want.shape)}"
            )
        if not all_finite(got):
            raise CheckpointError(f"{file}: tensor {name} holds NaN or Inf values")
    return tensors


def load_weights_into(model: GPT, weights: dict[str, torch.Tensor]) -> None:
    """Copy a snapshot's checked weights into a model of its shape (on any device)."""
    # strict=False only because a tied lm_head.weight is stored once, as wte.weight.
    model.load_state_dict(weights, strict=not model.config.tie_embeddings)


def load_checkpoint(path: PathLike, device: torch.device | str = "cpu") -> Checkpoint:
    """Load a snapshot (or a run directory's latest snapshot) into an eval-mode model."""
    snapshot = read_snapshot(path)
    model = GPT(snapshot.config)
    load_weights_into(model, snapshot.weights)
    model.to(device).eval()
    return Checkpoint(
        path=snapshot.path, model=model, tokenizer=snapshot.tokenizer, meta=snapshot.meta
    )
