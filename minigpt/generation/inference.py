"""Getting a trained model ready to generate: eval mode, no gradients, and the matmul
path that decodes fastest on this machine.

Decoding one token at batch 1 multiplies a vector by every weight matrix: the time
goes into reading the weights from memory, not into arithmetic, and how fast a CPU
reads them depends on the kernel and on the CPU. Four ways to run every `nn.Linear`:

- "default": PyTorch's own (an MKL or oneDNN matrix-vector product);
- "packed": oneDNN's linear with the weight prepacked once into its blocked layout
  (`PackedLinear`): the same function to float rounding; about 1.5x faster than the
  default on one 2-core AMD CPU, slower than it on an Intel Xeon;
- "bf16": the weights kept in bf16, half the bytes to read (`Bf16Linear`). A decode
  step multiplies in bf16 and widens the result back to fp32, so the residual
  stream, norms, attention, the KV cache and the logits stay fp32; a prompt's
  prefill computes in fp32 from the bf16 weights (bf16 matrix products of many rows
  are slow on CPUs without bf16 units). Rounding the weights changes the numbers a
  little, so "auto" takes it only when the next-token distributions it gives on the
  probe (below) stay within `TOLERANCE` of the default's in total variation: no
  outcome's probability moves by more than that. How far they stray depends on the
  weights, not only on the shape, so this is checked for every model loaded, also
  when the times come from the cache;
- "int8": the weights kept in int8 with one scale per output row (`Int8Linear`), a
  quarter of the bytes: a decode step (and a short prompt) runs PyTorch's weight-only
  int8 kernel on bf16 activations, a long prefill computes in fp32 from the weights
  dequantized. It rounds more than bf16 and gets the same check. The kernel reads 16
  inputs at a time from aligned memory, so a layer whose input width is not a multiple
  of 16 cannot take it (it would read past its rows): such a model is never offered it.

`prepare_for_inference(model, "auto")` times one decode step of the real model (a
KV cache holding `PROBE_CONTEXT` tokens, the command's batch up to `PROBE_MAX_BATCH`)
each way and keeps the fastest (`minigpt.tuning`: another path must beat the default
by 5%), remembering the times per machine and shape in the user's cache directory, so
later runs decide at once. On a GPU the model's own matmuls are used. A model so
prepared can no longer be trained or saved, which generation never needs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict

import torch
import torch.nn as nn
import torch.nn.functional as F

from minigpt.errors import ConfigError
from minigpt.fileio import PathLike
from minigpt.generation.context import ModelContext
from minigpt.model import GPT
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

MATMULS = ("auto", "default", "packed", "bf16", "int8")  # what --matmul accepts
LABELS = {"default": "default", "packed": "oneDNN packed", "bf16": "bf16 weights",
          "int8": "int8 weights"}  # fmt: skip
ROUNDING = ("bf16", "int8")  # the ways whose numbers depend on the weights: checked per model
TOLERANCE = 0.01  # total variation: no next-token event's probability moves by more than 1 point
PROBE_CONTEXT = 32  # tokens in the KV cache while a decode step is timed (at most block/2)
PROBE_STEPS = 4  # decode steps whose next-token distributions are compared with the default's
PROBE_MAX_BATCH = 8  # sequences timed at most: more decode alike, and must not be allocated
# before the generation's own memory check (a --num-samples that does not fit is refused)


class PackedLinear(nn.Module):
    """y = x W^T + b through oneDNN, with W prepacked once (inference only)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.out_features = weight.size(0)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)  # batch-1 layout
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.size(-1))  # (B*T, in)
        y = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return y.view(*x.shape[:-1], self.out_features)  # (B, T, out)


class Bf16Linear(nn.Module):
    """y = x W^T + b with W and b stored in bf16 (inference only): one position per
    sequence (a decode step) multiplies in bf16, several (a prefill) in fp32."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.weight = linear.weight.detach().to(torch.bfloat16)  # (out, in)
        self.bias = None if linear.bias is None else linear.bias.detach().to(torch.bfloat16)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 3 and x.size(1) == 1:  # (B, 1, in): read the bf16 weights as they are
            return F.linear(x.to(torch.bfloat16), self.weight, self.bias).to(x.dtype)
        bias = None if self.bias is None else self.bias.to(x.dtype)
        return F.linear(x, self.weight.to(x.dtype), bias)  # (B, T, out)


class Int8Linear(nn.Module):
    """y = x W^T + b with W stored in int8, one bf16 scale per output row (inference
    only): up to KERNEL_ROWS positions in all (a decode step, a short prompt) multiply
    with PyTorch's weight-only int8 kernel, more (a long prefill) in fp32 from W
    dequantized."""

    ALIGN = 16  # the kernel loads 16 inputs at a time from aligned rows
    KERNEL_ROWS = 32  # it reads W once per 4 rows: from about 50 rows (on one Xeon),
    # dequantizing W for one fp32 product is faster

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        self.check(linear)
        weight = linear.weight.detach().float()  # (out, in)
        peak = weight.abs().amax(dim=1).clamp_min(torch.finfo(torch.float32).tiny)  # (out,)
        self.scale = (peak / 127).to(torch.bfloat16)  # (out,) rounded as the kernel reads it
        steps = weight / self.scale.float().unsqueeze(1)  # (out, in): one fp32 copy, in place on
        self.qweight = steps.round_().clamp_(-127, 127).to(torch.int8)  # (out, in)
        self.bias = None if linear.bias is None else linear.bias.detach().float()

    @classmethod
    def check(cls, linear: nn.Linear) -> None:
        """Raise RuntimeError when the kernel cannot read this layer's rows."""
        if linear.in_features % cls.ALIGN:
            raise RuntimeError(
                f"int8 weights need layer inputs in multiples of {cls.ALIGN}, "
                f"not {linear.in_features}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.size(-1))  # (N, in)
        if rows.size(0) > self.KERNEL_ROWS:
            weight = self.qweight.to(torch.float32).mul_(self.scale.float().unsqueeze(1))
            return F.linear(x, weight, self.bias)  # (..., out)
        rows = rows.to(torch.bfloat16, copy=True)  # (N, in), a fresh aligned block
        y = torch._weight_int8pack_mm(rows, self.qweight, self.scale).float()  # (N, out)
        if self.bias is not None:
            y += self.bias
        return y.view(*x.shape[:-1], y.size(-1))  # (..., out)


MAKERS: dict[str, Callable[[nn.Linear], nn.Module]] = {
    "packed": PackedLinear,
    "bf16": Bf16Linear,
    "int8": Int8Linear,
}


def prepare_for_inference(
    model: GPT,
    matmul: str = "auto",
    *,
    batch: int = 1,
    timer: Timer | None = None,
    cache: PathLike | None = None,
) -> Decision:
    """Put `model` in eval mode without gradients and run its linear layers the way
    `matmul` says: "auto" (the fastest measured here at `batch` sequences, at most
    PROBE_MAX_BATCH; the measurement is kept under `cache`, by default
    `minigpt.tuning.cache_dir()`), "default", "packed", "bf16" or "int8". Returns the
    path taken and why."""
    check_matmul(matmul)
    model.eval()
    model.requires_grad_(False)
    on_cpu = model.device.type == "cpu" and model.dtype == torch.float32
    if matmul not in ("auto", "default") and not on_cpu:
        raise ConfigError(
            f"--matmul {matmul} is for fp32 models on the CPU; this one is "
            f"{model.dtype} on {model.device.type}: use auto or default"
        )
    if matmul != "auto":
        use_path(model, matmul)
        return Decision(matmul, "as asked")
    if not on_cpu:
        return Decision("default", f"PyTorch's own on {model.device.type}; measured on CPUs only")
    threads = torch.get_num_threads()
    batch = max(1, min(batch, PROBE_MAX_BATCH))
    key = {
        "what": "decode matmuls",
        "ways": list(MAKERS),  # a way added later is measured, not missed
        "machine": machine_fingerprint(model.device, threads),
        "model": asdict(model.config),
        "batch": batch,
        "context": probe_context(model),
    }
    trial = DecodeTrial(model, batch)
    decision = decide(
        key, lambda: trial.measure(timer or BestOfTimer()), baseline="default", labels=LABELS,
        what="this model's decode step", cache=SpeedCache(cache_dir(cache)),
        accept=trial.problem,
    )  # fmt: skip
    trial.use(decision.choice)
    return decision


def check_matmul(matmul: str) -> None:
    """Refuse a --matmul value that is not one of MATMULS."""
    if matmul not in MATMULS:
        raise ConfigError(f"--matmul {matmul!r} is not one of {', '.join(MATMULS)}")


def probe_context(model: GPT) -> int:
    """Tokens in the KV cache while a decode step is timed: a modest context."""
    return max(1, min(PROBE_CONTEXT, model.config.block_size // 2))


def linear_slots(model: nn.Module) -> list[tuple[nn.Module, str]]:
    """(parent, attribute) of every linear layer, in the model's order."""
    return [
        (module, name)
        for module in model.modules()
        for name, child in module.named_children()
        if isinstance(child, nn.Linear)
    ]


def use_path(model: GPT, path: str) -> None:
    """Swap every nn.Linear for the module of `path` ("default" leaves them)."""
    if path == "default":
        return
    try:
        modules = build(path, [getattr(parent, name) for parent, name in linear_slots(model)])
    except (RuntimeError, AttributeError) as e:
        raise ConfigError(
            f"--matmul {path} does not work here ({first_line(e)}); use auto or default"
        ) from e
    install(linear_slots(model), modules)


def build(path: str, layers: list[nn.Module]) -> list[nn.Module]:
    """`path`'s module in place of each of `layers`; a way that cannot take one of them
    (`check`) raises before it builds, and allocates, any."""
    maker = MAKERS[path]
    check = getattr(maker, "check", None)
    for layer in layers if check is not None else ():
        check(layer)
    with torch.no_grad():
        return [maker(layer) for layer in layers]


class DecodeTrial:
    """The ways of running one model's linear layers, each built and probed once, when
    first needed: timed (`measure`), checked against the default (`problem`), used."""

    def __init__(self, model: GPT, batch: int) -> None:
        self.model, self.batch = model, batch
        self.slots = linear_slots(model)
        self.layers = {"default": [getattr(parent, name) for parent, name in self.slots]}
        self.probes: dict[str, DecodeProbe] = {}
        self.failed: dict[str, str] = {}  # the ways that cannot run here, and why

    def probe(self, path: str) -> DecodeProbe | None:
        """The probe of `path` (None when it cannot run here); the model is left with
        its default layers."""
        if path not in self.probes and path not in self.failed:
            try:
                self.probes[path] = DecodeProbe(
                    self.model, self.slots, self.built(path), self.batch
                )
            except (RuntimeError, AttributeError) as e:  # no oneDNN, no bf16 or int8 kernels
                self.failed[path] = f"it fails here ({first_line(e)})"
            finally:
                install(self.slots, self.layers["default"])
        return self.probes.get(path)

    def built(self, path: str) -> list[nn.Module]:
        if path not in self.layers:
            self.layers[path] = build(path, self.layers["default"])
        return self.layers[path]

    def measure(self, timer: Timer) -> Measurement:
        """Seconds per decode step of each way that runs here; a way whose numbers
        stray from the default's whatever the weights (a broken kernel) is rejected:
        bf16's and int8's depend on the weights, so `problem` checks them per model."""
        probes = {path: p for path in ("default", *MAKERS) if (p := self.probe(path))}
        try:
            seconds = timer({path: probe.step for path, probe in probes.items()})
        finally:
            install(self.slots, self.layers["default"])
        rejected = dict(self.failed)
        if "packed" in probes and (problem := self.differs("packed")):
            rejected["packed"] = problem
        return Measurement(seconds, rejected)

    def problem(self, path: str) -> str | None:
        """Why `path` should not run this model (its distributions stray), or None."""
        return self.differs(path) if path in ROUNDING else None

    def differs(self, path: str) -> str | None:
        """How far `path`'s next-token distributions are from the default's on the
        probe (the largest total variation over its steps), when further than
        TOLERANCE; None when within it."""
        probe, reference = self.probe(path), self.probe("default")
        if probe is None or reference is None:
            return self.failed.get(path, "it fails here")
        try:
            moved = total_variation(probe.logprobs(), reference.logprobs())
        finally:
            install(self.slots, self.layers["default"])
        if moved <= TOLERANCE:
            return None
        return f"next-token probabilities move by up to {moved:.2g} (total variation)"

    def use(self, path: str) -> None:
        """Leave the model running `path`'s layers; the other ways' are dropped."""
        install(self.slots, self.built(path))
        self.probes.clear()


def total_variation(logprobs: torch.Tensor, reference: torch.Tensor) -> float:
    """The largest total variation distance between two sets of next-token
    distributions given as log-probabilities (..., V): half the summed absolute
    difference of the probabilities, the most any event's probability moves."""
    return (logprobs.exp() - reference.exp()).abs().sum(dim=-1).max().item() / 2


def first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [type(error).__name__])[0][:120]


def install(slots: list[tuple[nn.Module, str]], modules: list[nn.Module]) -> None:
    """Put `modules` in the linear layers' places (nothing to do when they are there)."""
    if slots and getattr(*slots[0]) is modules[0]:
        return
    for (parent, name), module in zip(slots, modules, strict=True):
        setattr(parent, name, module)


class DecodeProbe:
    """One way of running the linear layers, with its own KV cache holding a random
    context of `probe_context(model)` tokens for `batch` sequences."""

    def __init__(
        self, model: GPT, slots: list[tuple[nn.Module, str]], modules: list[nn.Module], batch: int
    ) -> None:
        self.model, self.slots, self.modules = model, slots, modules
        self.n = probe_context(model)
        gen = torch.Generator().manual_seed(0)  # the same context for every way
        vocab = model.config.vocab_size or 1
        context = torch.randint(0, vocab, (batch, self.n), generator=gen)  # (B, n)
        self.next = torch.randint(0, vocab, (batch, PROBE_STEPS), generator=gen)  # (B, S)
        self.ctx = ModelContext(model, batch, capacity=self.n + PROBE_STEPS)
        install(slots, modules)
        self.ctx.feed(context)
        self.step()  # a way that fails here fails before it is timed

    def step(self) -> torch.Tensor:
        """One decode step after the context: logits (B, V)."""
        install(self.slots, self.modules)
        self.ctx.truncate(self.n)
        return self.ctx.feed(self.next[:, :1])

    def logprobs(self) -> torch.Tensor:
        """Log-probabilities (B, S, V) of PROBE_STEPS decode steps after the context."""
        install(self.slots, self.modules)
        self.ctx.truncate(self.n)
        steps = [self.ctx.feed(self.next[:, i : i + 1]) for i in range(PROBE_STEPS)]
        return torch.stack(steps, dim=1).log_softmax(dim=-1)
