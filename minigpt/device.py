"""Where and how to compute: the device (cuda > mps > cpu), the CPU threads torch uses,
the autocast precision where it needs no measurement (`minigpt.training.precision`
measures a CPU's; `minigpt.training.compiling` decides whether to compile), and the
measured matmul peak that MFU is reported against."""

from __future__ import annotations

import ctypes
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import torch

from minigpt import tuning
from minigpt.config import MAX_THREADS
from minigpt.errors import ConfigError
from minigpt.fileio import PathLike
from minigpt.tuning import Measurement, SpeedCache, cache_dir, machine_fingerprint

DEVICE_TYPES = ("cpu", "cuda", "mps")
# glibc's malloc gives blocks over its mmap threshold (128 KB to start) back to the
# system when they are freed, and trims the heap's free top beyond twice that: a
# training step that allocates and frees megabytes of activations then takes them as
# fresh pages every step. On a 2-core AMD EPYC, 400 steps of the default model took
# 0.73M page faults and 27 ms a step; keeping freed memory, 0.20M and 23 ms.
MALLOC_KEEP = {-3: 32 << 20, -1: 256 << 20}  # M_MMAP_THRESHOLD (its maximum), M_TRIM_THRESHOLD


def choose_device(requested: str) -> torch.device:
    """ "auto" picks cuda, then mps, then cpu; anything else must exist on this machine."""
    if requested == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(requested)
    except RuntimeError as e:
        raise ConfigError(f"unknown --device {requested!r}; use auto, cpu, cuda or mps") from e
    if device.type not in DEVICE_TYPES:
        raise ConfigError(f"unsupported --device {requested!r}; use auto, cpu, cuda or mps")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("--device cuda was asked for, but no CUDA GPU is available")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ConfigError(
                f"--device {requested}: this machine has {torch.cuda.device_count()} CUDA GPU(s)"
            )
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError("--device mps was asked for, but MPS is not available")
    return device


def set_threads(threads: int | None) -> int:
    """Have torch compute with `threads` CPU threads (intra-op: one matmul split across
    cores); None keeps torch's own choice (usually one per physical core, or
    OMP_NUM_THREADS). Returns the number in effect. Fewer threads than cores helps on a
    shared machine, where threads that wait for a busy core stall every matmul."""
    if threads is not None:
        check_threads(threads)
        torch.set_num_threads(threads)
    return torch.get_num_threads()


def keep_freed_memory() -> bool:
    """Have glibc's malloc keep freed blocks up to 32 MB for reuse, and up to 256 MB of
    free heap, rather than give them back to the system after every step
    (`MALLOC_KEEP`). Process-wide, like the thread count; False where the C library is
    not glibc (nothing is changed)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    return all(mallopt(option, value) == 1 for option, value in MALLOC_KEEP.items())


def check_threads(threads: int | None) -> None:
    """Refuse a thread count torch cannot use (None: torch's choice)."""
    if threads is not None and (isinstance(threads, bool) or not 1 <= threads <= MAX_THREADS):
        raise ConfigError(f"--threads must be from 1 to {MAX_THREADS:,}, got {threads}")


def bf16_is_fast(device: torch.device) -> bool:
    """bf16 matmuls beat fp32 on CUDA GPUs that support bf16. On a CPU it depends on the
    CPU (bf16 units or not) and the model: only a measurement tells
    (`minigpt.training.precision`)."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def choose_precision(device: torch.device, requested: str) -> tuple[torch.dtype, str]:
    """The autocast dtype for `requested` ("auto", "fp32", "bf16", "fp16") and a line
    saying why, where no measurement is needed: an explicit choice, or a CUDA GPU.
    fp16 trains with a gradient scaler (`needs_grad_scaler`). On a CPU, training
    measures "auto" on its model (`minigpt.training.precision`); here it is fp32."""
    if requested == "fp32":
        return torch.float32, "fp32 as asked"
    if requested in ("bf16", "fp16"):
        slow = device.type == "cuda" and requested == "bf16" and not bf16_is_fast(device)
        slow = slow or (requested == "fp16" and device.type != "cuda")
        note = f" (on this {device.type} it is likely slower than fp32)" if slow else ""
        scaler = " with a gradient scaler" if requested == "fp16" else ""
        dtype = torch.bfloat16 if requested == "bf16" else torch.float16
        return dtype, f"{requested} autocast{scaler} as asked{note}"
    if bf16_is_fast(device):
        return torch.bfloat16, "bf16 autocast (a CUDA GPU with bf16 support)"
    if device.type == "cuda":
        return torch.float16, "fp16 autocast with a gradient scaler (this GPU lacks bf16)"
    return torch.float32, f"fp32 (autocast on {device.type} is not measured without a model)"


def needs_grad_scaler(dtype: torch.dtype) -> bool:
    """fp16's narrow range underflows small gradients unless the loss is scaled up."""
    return dtype == torch.float16


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager:
    """Mixed precision for the forward pass; a no-op for fp32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def matmul_peak(device: torch.device, dtype: torch.dtype, cache: PathLike | None = None) -> float:
    """`measure_matmul_peak`, measured once per machine and dtype: later runs read it
    from the speed cache (`minigpt.tuning`) and start a third of a second sooner. A
    busy machine's figure is used but not kept."""
    key = peak_key(device, dtype)
    store = SpeedCache(cache_dir(cache))
    measured = store.get(key)
    if measured is None:
        measured = Measurement({"matmul": 2 * key["n"] ** 3 / measure_matmul_peak(device, dtype)})
        if tuning.machine_busy() is None:
            store.put(key, measured)
    return 2 * key["n"] ** 3 / measured.seconds["matmul"]


def peak_key(device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
    """What the matmul peak is kept under: the machine, the dtype, the matrices' size
    (its measurement is the seconds of one n x n matmul)."""
    return {
        "what": "matmul peak",
        "machine": machine_fingerprint(device, torch.get_num_threads()),
        "dtype": str(dtype),
        "n": _peak_size(device),
    }


def _peak_size(device: torch.device) -> int:
    return 1024 if device.type == "cpu" else 8192


def measure_matmul_peak(device: torch.device, dtype: torch.dtype, seconds: float = 0.3) -> float:
    """FLOP/s of a large square matmul in `dtype` on `device`: the ceiling MFU is
    measured against (the machine's real peak, not a datasheet's)."""
    n = _peak_size(device)
    gen = torch.Generator(device=device).manual_seed(0)  # leaves the global RNG alone
    a = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    b = torch.randn(n, n, device=device, dtype=dtype, generator=gen)
    best = float("inf")
    deadline = time.perf_counter() + seconds
    for _ in range(20):
        _sync(device)
        t0 = time.perf_counter()
        torch.mm(a, b)
        _sync(device)
        best = min(best, time.perf_counter() - t0)
        if time.perf_counter() > deadline:
            break
    return 2 * n**3 / best


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
