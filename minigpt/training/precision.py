"""The precision a run trains in, measured on the run's own model where only measuring
can tell.

On a CUDA GPU the answer is known: bf16 autocast where the GPU supports it, else fp16
with a gradient scaler (`minigpt.device.choose_precision`). On a CPU it depends on the
CPU: bf16 autocast trained a 6-layer, 384-wide model 1.9x faster than fp32 on a Xeon
with AMX, and ten times slower on an AMD EPYC without bf16 units; on the Xeon even the
default small model was slower in bf16. It also depends on how attention is computed
(`minigpt.model.ATTENTION_WAYS`): on an AMD EPYC with AVX-512 bf16, PyTorch's fused
bf16 attention took 2.9x the fp32 time in its backward pass, and attention written as
bf16 matmuls half the fp32 time. So `--precision auto` on a CPU times a forward and
backward pass of the actual model on a batch of the run's shape (at most
`MEASURE_TOKENS` tokens, to keep it short) in each of CPU_CHOICES: fp32, bf16 autocast,
bf16 autocast with fp32 attention, and bf16 autocast with matmul attention (only where
the run's attention weights fit in `MATMUL_ATTENTION_BYTES`: that way keeps them for
the backward pass, B x heads x T x T per layer), and trains in a bf16 way only when it
is more than 5% faster than fp32 (`minigpt.tuning.MARGIN`). The times are kept per
machine and shape in the user's cache directory, so only the first run pays for them
(about a second). Under torchrun, rank 0 measures and tells the others, so every rank
trains in the same precision.

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

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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
# The most memory the attention weights kept for the backward pass may take (all layers,
# the run's batch, bf16) for auto to consider matmul attention: 2.4 GB for GPT-2's shape
# at batch 8, 8 MB for the default model at batch 16.
MATMUL_ATTENTION_BYTES = 1 << 30
# Each precision a run can train in, by the name its snapshots record: the autocast
# dtype (float32: none) and how attention is computed under it (`GPT.set_attention`).
RUN_PRECISIONS: dict[str, tuple[torch.dtype, str]] = {
    "fp32": (torch.float32, "fused"),
    "bf16": (torch.bfloat16, "fused"),
    "bf16-fp32-attention": (torch.bfloat16, "fp32"),
    "bf16-matmul-attention": (torch.bfloat16, "matmul"),
    "fp16": (torch.float16, "fused"),
}
LABELS = {
    "fp32": "fp32",
    "bf16": "bf16 autocast",
    "bf16-fp32-attention": "bf16 autocast with fp32 attention",
    "bf16-matmul-attention": "bf16 autocast with matmul attention",
    "fp16": "fp16 autocast with a gradient scaler",
}
# What a CPU's auto measures (matmul attention where its weights fit, `cpu_choices`).
CPU_CHOICES = ("fp32", "bf16", "bf16-fp32-attention", "bf16-matmul-attention")
# The precisions with another way of attending: only ever measured, and kept, on CPUs.
CPU_ONLY = frozenset(name for name, (_, way) in RUN_PRECISIONS.items() if way != "fused")
NAMES = {torch.float32: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}


class RunPrecision(NamedTuple):
    """The precision a run trains in (a RUN_PRECISIONS name) and the line saying why."""

    name: str
    line: str

    @property
    def dtype(self) -> torch.dtype:
        """The autocast dtype (float32: no autocast)."""
        return RUN_PRECISIONS[self.name][0]

    @property
    def attention(self) -> str:
        """How attention is computed under the autocast (`GPT.set_attention`)."""
        return RUN_PRECISIONS[self.name][1]


class Autocast(NamedTuple):
    """The precision a run was trained in, as its snapshots record it."""

    name: str  # a RUN_PRECISIONS name
    device: str  # the device type it was chosen for: cpu, cuda, mps


def trained_in(meta: Mapping[str, Any]) -> Autocast | None:
    """What a snapshot's config.json says the run was trained in (None: not recorded,
    or not something minigpt writes)."""
    name, device = recorded_precision(meta), meta.get("autocast_device")
    if name is not None and device in DEVICE_TYPES:
        return Autocast(name, device)
    return None


def recorded_precision(meta: Mapping[str, Any]) -> str | None:
    """The RUN_PRECISIONS name a snapshot's config.json records (None: none, or not one)."""
    name = meta.get("autocast")
    return name if isinstance(name, str) and name in RUN_PRECISIONS else None


def choose_run_precision(
    model: GPT,
    requested: str,
    batch_size: int,
    ctx: DistContext,
    *,
    began: Autocast | None = None,
    timer: Timer | None = None,
    cache: PathLike | None = None,
) -> RunPrecision:
    """The precision for `requested` (auto, fp32, bf16, fp16) and a line saying why.
    "auto" keeps what a resumed run `began` with on the same kind of device; else on a
    CPU it is measured (`measure_precision`) on rank 0 and shared. The caller sets the
    model's attention to match (`GPT.set_attention`)."""
    device = model.device
    if requested == "auto" and began is not None and keeps(began, device):
        why = "as the run began; --precision to change it"
        return RunPrecision(began.name, f"{LABELS[began.name]} ({why})")
    if requested in CPU_ONLY:
        return RunPrecision(requested, f"{LABELS[requested]} as asked")
    if requested != "auto" or device.type != "cpu":
        dtype, line = choose_precision(device, requested)
        return RunPrecision(NAMES[dtype], line)
    text = ""
    if ctx.is_main:
        decision = measure_precision(model, batch_size, timer=timer, cache=cache)
        text = f"{decision.choice}\n{decision.why}"
    choice, _, why = broadcast_text(text, ctx).partition("\n")
    return RunPrecision(choice, f"{LABELS[choice]} ({why})")


def keeps(began: Autocast, device: torch.device) -> bool:
    """Whether a resumed run goes on in the precision it began with: on the same kind of
    device, in a precision that device can train in."""
    if began.device != device.type:
        return False
    if began.name in CPU_ONLY:
        return device.type == "cpu"
    if began.name == "fp16":
        return device.type == "cuda"
    if began.name != "fp32" and device.type == "cuda":
        return bf16_is_fast(device)
    return True


def measure_precision(
    model: GPT, batch_size: int, *, timer: Timer | None = None, cache: PathLike | None = None
) -> Decision:
    """The fastest of `cpu_choices` for training `model` at `batch_size` on this CPU,
    from the cache or timed."""
    block = model.config.block_size
    rows = max(1, min(batch_size, MEASURE_TOKENS // block))
    choices = cpu_choices(model, batch_size)
    key = {
        "what": "training precision",
        "machine": machine_fingerprint(model.device, torch.get_num_threads()),
        "model": asdict(model.config),
        "batch": [rows, block],
        "candidates": list(choices),
    }
    return decide(
        key, lambda: time_training_step(model, rows, choices, timer or BestOfTimer()),
        baseline="fp32",
        labels=LABELS, what=f"this model's training step, {rows} x {block} tokens",
        cache=SpeedCache(cache_dir(cache)),
    )  # fmt: skip


def cpu_choices(model: GPT, batch_size: int) -> tuple[str, ...]:
    """CPU_CHOICES, less matmul attention where the attention weights it keeps for the
    backward pass (B x heads x T x T per layer, in bf16) would take more than
    MATMUL_ATTENTION_BYTES at the run's batch size."""
    c = model.config
    kept = 2 * c.n_layer * batch_size * c.n_head * c.block_size**2
    return tuple(
        n for n in CPU_CHOICES if n != "bf16-matmul-attention" or kept <= MATMUL_ATTENTION_BYTES
    )


def time_training_step(
    model: GPT, rows: int, choices: tuple[str, ...], timer: Timer
) -> Measurement:
    """Seconds per forward and backward pass of `model` on `rows` random sequences in
    each of `choices`; the run's RNG states, gradients and attention way are left as
    they were."""
    gen = torch.Generator().manual_seed(0)
    vocab, block = model.config.vocab_size or 1, model.config.block_size
    x = torch.randint(0, vocab, (rows, block), generator=gen).to(model.device)  # (B, T)
    y = torch.randint(0, vocab, (rows, block), generator=gen).to(model.device)  # (B, T)

    def step(name: str) -> None:
        with computing_in(model, name):
            logits = model(x)  # (B, T, V)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        model.zero_grad(set_to_none=True)

    candidates = {name: (lambda n=name: step(n)) for name in choices}
    rejected: dict[str, str] = {}
    with torch.random.fork_rng(devices=[]):  # dropout's draws must not shift the run's
        try:
            seconds = timer(candidates)
        except RuntimeError as e:  # an op without a bf16 kernel in this build
            problem = f"it fails here ({str(e).splitlines()[0][:120]})"
            rejected = {name: problem for name in choices if name != "fp32"}
            seconds = timer({"fp32": candidates["fp32"]})
    model.zero_grad(set_to_none=True)
    return Measurement(seconds, rejected)


@contextmanager
def computing_in(model: GPT, name: str) -> Iterator[None]:
    """A forward pass of `model` in the RUN_PRECISIONS `name`: its autocast and its way
    of attending; the model's attention way is restored after."""
    dtype, attention = RUN_PRECISIONS[name]
    before = model.attention
    model.set_attention(attention)
    try:
        with autocast(model.device, dtype):
            yield
    finally:
        model.set_attention(before)
