"""The precision a run trains in, measured on the run's own model where only measuring
can tell.

On a CUDA GPU the answer is known: bf16 autocast where the GPU supports it, else fp16
with a gradient scaler (`minigpt.device.choose_precision`). On a CPU it depends on the
CPU: bf16 autocast trained a 6-layer, 384-wide model 1.9x faster than fp32 on a Xeon
with AMX, and ten times slower on an AMD EPYC without bf16 units; on the Xeon even the
default small model was slower in bf16. So `--precision auto` on a CPU times a forward
and backward pass of the actual model on a batch of the run's shape (at most
`MEASURE_TOKENS` tokens, to keep it short) in fp32 and in bf16 autocast, and trains in
bf16 only when it is more than 5% faster (`minigpt.tuning.MARGIN`). The times are kept
per machine and shape in the user's cache directory, so only the first run pays for
them (about a second). Under torchrun, rank 0 measures and tells the others, so every
rank trains in the same precision.

A resumed run goes on in the precision it began with (its snapshots record it) when it
resumes on the same kind of device: what auto chose at a run's start stands for the
whole run, even if a measurement now (other threads, a busy machine) would say
otherwise. On another kind of device auto decides afresh, and the resume reports the
change (`minigpt.training.checkpointer`); `--precision` chooses explicitly.

The measurement leaves the run as it was: its random number generators (dropout draws
them) are restored and the gradients cleared, so a run that measured and one that used
the cache train alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from minigpt.device import DEVICE_TYPES, autocast, bf16_is_fast, choose_precision
from minigpt.fileio import PathLike
from minigpt.model import GPT
from minigpt.training.distributed import DistContext, broadcast_text
from minigpt.tuning import (
    BestOfTimer,
    Decision,
    Measurement,
    SpeedCache,
    Timer,
    cache_dir,
    decide,
    machine_fingerprint,
)

MEASURE_TOKENS = 512  # tokens of the measured batch: whole sequences, at least one
LABELS = {"fp32": "fp32", "bf16": "bf16 autocast", "fp16": "fp16 autocast with a gradient scaler"}
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}  # what a CPU's auto chooses from
NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}
BY_NAME = {name: dtype for dtype, name in NAMES.items()}


class Autocast(NamedTuple):
    """The precision a run was trained in, as its snapshots record it."""

    dtype: str  # fp32, bf16 or fp16 (NAMES)
    device: str  # the device type it was chosen for: cpu, cuda, mps


def trained_in(meta: Mapping[str, Any]) -> Autocast | None:
    """What a snapshot's config.json says the run was trained in (None: not recorded,
    or not something minigpt writes)."""
    dtype, device = meta.get("autocast"), meta.get("autocast_device")
    if dtype in NAMES.values() and device in DEVICE_TYPES:
        return Autocast(dtype, device)
    return None


def choose_run_precision(
    model: GPT,
    requested: str,
    batch_size: int,
    ctx: DistContext,
    *,
    began: Autocast | None = None,
    timer: Timer | None = None,
    cache: PathLike | None = None,
) -> tuple[torch.dtype, str]:
    """The autocast dtype for `requested` (auto, fp32, bf16, fp16) and a line saying why.
    "auto" keeps what a resumed run `began` with on the same kind of device; else on a
    CPU it is measured (`measure_precision`) on rank 0 and shared."""
    device = model.device
    if requested == "auto" and began is not None and keeps(began, device):
        why = "as the run began; --precision to change it"
        return BY_NAME[began.dtype], f"{LABELS[began.dtype]} ({why})"
    if requested != "auto" or device.type != "cpu":
        return choose_precision(device, requested)
    text = ""
    if ctx.is_main:
        decision = measure_precision(model, batch_size, timer=timer, cache=cache)
        text = f"{decision.choice}\n{decision.why}"
    choice, _, why = broadcast_text(text, ctx).partition("\n")
    return DTYPES[choice], f"{LABELS[choice]} ({why})"


def keeps(began: Autocast, device: torch.device) -> bool:
    """Whether a resumed run goes on in the precision it began with: on the same kind of
    device, in a precision that device can train in."""
    if began.device != device.type:
        return False
    if began.dtype == "fp16":
        return device.type == "cuda"
    if began.dtype == "bf16" and device.type == "cuda":
        return bf16_is_fast(device)
    return True


def measure_precision(
    model: GPT, batch_size: int, *, timer: Timer | None = None, cache: PathLike | None = None
) -> Decision:
    """fp32 or bf16 autocast for training `model` on this CPU, from the cache or timed."""
    block = model.config.block_size
    rows = max(1, min(batch_size, MEASURE_TOKENS // block))
    key = {
        "what": "training precision",
        "machine": machine_fingerprint(model.device, torch.get_num_threads()),
        "model": asdict(model.config),
        "batch": [rows, block],
    }
    return decide(
        key, lambda: time_training_step(model, rows, timer or BestOfTimer()), baseline="fp32",
        labels=LABELS, what=f"this model's training step, {rows} x {block} tokens",
        cache=SpeedCache(cache_dir(cache)),
    )  # fmt: skip


def time_training_step(model: GPT, rows: int, timer: Timer) -> Measurement:
    """Seconds per forward and backward pass of `model` on `rows` random sequences, in
    fp32 and in bf16 autocast; the run's RNG states and gradients are left as they were."""
    gen = torch.Generator().manual_seed(0)
    vocab, block = model.config.vocab_size or 1, model.config.block_size
    x = torch.randint(0, vocab, (rows, block), generator=gen).to(model.device)  # (B, T)
    y = torch.randint(0, vocab, (rows, block), generator=gen).to(model.device)  # (B, T)

    def step(dtype: torch.dtype) -> None:
        with autocast(model.device, dtype):
            logits = model(x)  # (B, T, V)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        model.zero_grad(set_to_none=True)

    candidates = {name: (lambda d=dtype: step(d)) for name, dtype in DTYPES.items()}
    rejected: dict[str, str] = {}
    with torch.random.fork_rng(devices=[]):  # dropout's draws must not shift the run's
        try:
            seconds = timer(candidates)
        except RuntimeError as e:  # an op without a bf16 kernel in this build
            rejected["bf16"] = f"it fails here ({str(e).splitlines()[0][:120]})"
            seconds = timer({"fp32": candidates["fp32"]})
    model.zero_grad(set_to_none=True)
    return Measurement(seconds, rejected)
