"""Everything beyond the weights that an exact resume needs, as tensors and JSON.

`train_state.safetensors` holds the optimizer moments (by parameter name), the data
sampler's generator and every rank's torch RNG states; `train_state.json` holds the
counters: step, time spent, best val loss, patience, skipped steps, the gradient
scaler, Python's `random` state. Restoring all of it makes the resumed run take the
same steps, on the same batches, with the same dropout masks, as a run never stopped.
numpy's global RNG is never used by minigpt, so it is not saved.
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict, dataclass, fields
from typing import Any

import torch

from minigpt.errors import CheckpointError
from minigpt.schema import is_int, is_number
from minigpt.training.muon import state_keys

MAX_COUNT = 1 << 62  # far beyond any run, and safe in every float and int64 sum
COUNTER_BOUNDS = {"step": MAX_COUNT, "tokens": MAX_COUNT, "evals_since_best": MAX_COUNT,
                  "skipped_steps": MAX_COUNT, "world_size": 1 << 16}  # fmt: skip
MAX_ELAPSED = 1e9  # seconds: about 30 years of training


@dataclass
class TrainState:
    """The counters of a run; everything a resumed loop continues from."""

    step: int = 0  # optimizer steps taken (skipped ones included)
    elapsed: float = 0.0  # seconds of training so far, summed over resumes
    tokens: int = 0  # training tokens consumed
    best_val_loss: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0  # for --patience
    skipped_steps: int = 0  # steps skipped for a non-finite loss or gradient
    world_size: int = 1
    scaler: dict[str, Any] | None = None  # GradScaler.state_dict() for fp16
    python_random: list[Any] | None = None
    warmup_end: float | None = None  # the share of the run done when warm-up ended
    time_reserve: float | None = None  # seconds of --time kept off the loop (start-up, final eval)

    def advance(self, tokens: int, elapsed: float, skipped: bool) -> None:
        """Count one step, taken or skipped; `elapsed` is the run's time after it."""
        self.step += 1
        self.tokens += tokens
        self.elapsed = elapsed
        self.skipped_steps += 1 if skipped else 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def state_from_json(data: Any, where: str) -> TrainState:
    """A TrainState from train_state.json's "state" object, with its types checked."""
    names = {f.name for f in fields(TrainState)}
    if isinstance(data, dict):  # a state saved before these keys existed
        data = {"warmup_end": None, "time_reserve": None, **data}
    if not isinstance(data, dict) or set(data) != names:
        raise CheckpointError(f"{where}: the training state does not have the expected keys")
    for key, high in COUNTER_BOUNDS.items():
        value = data[key]
        low = 1 if key == "world_size" else 0
        if not (is_int(value) and low <= value <= high):
            raise CheckpointError(f"{where}: {key} must be an integer from {low} to {high:,}")
    elapsed = data["elapsed"]
    if not (is_number(elapsed) and 0 <= elapsed <= MAX_ELAPSED):
        raise CheckpointError(f"{where}: elapsed must be seconds from 0 to {MAX_ELAPSED:,.0f}")
    best = data["best_val_loss"]
    if best is not None and not (is_number(best) and math.isfinite(best)):
        raise CheckpointError(f"{where}: best_val_loss must be a finite number or null")
    best_step = data["best_step"]
    if best_step is not None and not (is_int(best_step) and 0 <= best_step <= data["step"]):
        raise CheckpointError(f"{where}: best_step must be an integer from 0 to the step")
    end = data["warmup_end"]
    if end is not None and not (is_number(end) and 0 <= end <= 1):
        raise CheckpointError(f"{where}: warmup_end must be a number from 0 to 1 or null")
    reserve = data["time_reserve"]
    if reserve is not None and not (is_number(reserve) and 0 <= reserve <= MAX_ELAPSED):
        raise CheckpointError(f"{where}: time_reserve must be seconds from 0 to {MAX_ELAPSED:,.0f}")
    if data["scaler"] is not None and not isinstance(data["scaler"], dict):
        raise CheckpointError(f"{where}: scaler is not an object")
    return TrainState(**data)


# ---------------------------------------------------------------------------------
# Optimizer moments.


def _param_names(model: torch.nn.Module) -> dict[int, str]:
    return {id(p): name for name, p in model.named_parameters()}


def optimizer_tensors(model: torch.nn.Module, optimizer: torch.optim.Optimizer):
    """The optimizer's per-parameter state (AdamW's moments, Muon's momentum) as flat
    tensors named `optim.<param>.<key>`."""
    names = _param_names(model)
    out: dict[str, torch.Tensor] = {}
    for group in optimizer.param_groups:
        for p in group["params"]:
            for key, value in optimizer.state.get(p, {}).items():
                out[f"optim.{names[id(p)]}.{key}"] = value.detach().cpu().contiguous()
    return out


def restore_optimizer(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]
) -> None:
    """Put saved moments back; each parameter has all of them or none (no step yet)."""
    names = _param_names(model)
    state: dict[int, dict[str, torch.Tensor]] = {}
    index = 0  # optimizer.state_dict() numbers the parameters group by group
    for group in optimizer.param_groups:
        for p in group["params"]:
            kinds = state_keys(group)
            keys = [f"optim.{names[id(p)]}.{k}" for k in kinds]
            present = [k in tensors for k in keys]
            if all(present):
                state[index] = {
                    k: _checked(tensors[n], n, p, k) for k, n in zip(kinds, keys, strict=True)
                }
            elif any(present):
                raise CheckpointError(f"the optimizer state of {names[id(p)]} is incomplete")
            index += 1
    known = {
        f"optim.{names[id(p)]}.{k}"
        for group in optimizer.param_groups
        for p in group["params"]
        for k in state_keys(group)
    }
    unknown = sorted(k for k in tensors if k.startswith("optim.") and k not in known)
    if unknown:
        raise CheckpointError(f"unexpected optimizer tensor {unknown[0]}")
    groups = optimizer.state_dict()["param_groups"]
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def _checked(t: torch.Tensor, name: str, param: torch.Tensor, key: str) -> torch.Tensor:
    want = () if key == "step" else tuple(param.shape)
    if tuple(t.shape) != want or t.dtype != torch.float32:
        raise CheckpointError(f"optimizer tensor {name} has the wrong shape or dtype")
    if not bool(torch.isfinite(t).all()):
        raise CheckpointError(f"optimizer tensor {name} holds NaN or Inf values")
    return t


# ---------------------------------------------------------------------------------
# Random number generators.


def rng_tensors(
    gathered_cpu: list[torch.Tensor],
    gathered_cuda: list[torch.Tensor] | None,
    data_generator: torch.Generator,
) -> dict[str, torch.Tensor]:
    """The data sampler's generator and each rank's torch RNG states, by name."""
    out = {"rng.data": data_generator.get_state()}
    for rank, state in enumerate(gathered_cpu):
        out[f"rng.cpu.{rank}"] = state
    for rank, state in enumerate(gathered_cuda or []):
        out[f"rng.cuda.{rank}"] = state
    return out


def restore_rng(
    tensors: dict[str, torch.Tensor],
    rank: int,
    data_generator: torch.Generator,
    device: torch.device,
) -> bool:
    """Restore this rank's RNG states; False when the checkpoint has none for it (a job
    resumed with more processes), in which case the caller seeds afresh."""
    _set_generator_state(data_generator, tensors.get("rng.data"), "rng.data")
    cpu = tensors.get(f"rng.cpu.{rank}")
    if cpu is None:
        return False
    try:
        torch.set_rng_state(cpu)
        cuda = tensors.get(f"rng.cuda.{rank}")
        if device.type == "cuda" and cuda is not None:
            torch.cuda.set_rng_state(cuda, device)
    except (RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"the saved RNG state of rank {rank} is not valid: {e}") from e
    return True


def _set_generator_state(gen: torch.Generator, state: torch.Tensor | None, name: str) -> None:
    if state is None:
        raise CheckpointError(f"the training state lacks {name}")
    try:
        gen.set_state(state)
    except (RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"the saved state {name} is not valid: {e}") from e


def python_random_state() -> list[Any]:
    """Python's `random` state as JSON: [version, [625 ints], gauss_next]."""
    version, internal, gauss = random.getstate()
    return [version, list(internal), gauss]


def restore_python_random(state: list[Any] | None) -> None:
    if state is None:
        return
    try:
        version, internal, gauss = state
        random.setstate((version, tuple(internal), gauss))
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"the saved Python random state is not valid: {e}") from e
