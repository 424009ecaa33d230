"""Saving and loading checkpoints: safetensors for tensors, JSON for everything else.

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
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

from minigpt.config import GPTConfig
from minigpt.errors import CheckpointError, MinigptError, TokenizerError
from minigpt.fileio import (
    PathLike,
    file_sha256,
    fsync_path,
    load_json_object,
    make_temp_dir,
    parked,
    swap_dir_into_place,
    write_error_fix,
    write_synced,
)
from minigpt.model import GPT
from minigpt.schema import from_dict, to_dict
from minigpt.tensorfile import write_safetensors
from minigpt.tokenizer.encodings import Tokenizer
from minigpt.tokenizer.files import load_tokenizer, save_tokenizer

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


FINITE_CHUNK = 1 << 20  # elements checked at a time: no tensor-sized temporaries


def all_finite(t: torch.Tensor) -> bool:
    """Whether a tensor holds no NaN or Inf, checked a chunk at a time (a whole-tensor
    isfinite would allocate temporaries the size of the largest weight)."""
    if not t.is_floating_point():
        return True
    flat = t.reshape(-1)
    return all(
        bool(torch.isfinite(flat[i : i + FINITE_CHUNK]).all())
        for i in range(0, flat.numel(), FINITE_CHUNK)
    )


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


# ---------------------------------------------------------------------------------
# Finding and loading.


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
