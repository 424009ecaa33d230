"""Where and how to compute: the device (cuda > mps > cpu) and the autocast precision."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext

import torch

from minigpt.errors import ConfigError

DEVICE_TYPES = ("cpu", "cuda", "mps")


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


def bf16_is_fast(device: torch.device) -> bool:
    """bf16 matmuls beat fp32 on CUDA GPUs that support bf16; on CPUs they are far slower."""
    return device.type == "cuda" and torch.cuda.is_bf16_supported()


def choose_precision(device: torch.device, requested: str) -> tuple[torch.dtype, str]:
    """The autocast dtype for `requested` ("auto", "fp32", "bf16") and a line saying why."""
    if requested == "fp32":
        return torch.float32, "fp32 as asked"
    if requested == "bf16":
        note = "" if bf16_is_fast(device) else f" (on {device.type} it is likely slower than fp32)"
        return torch.bfloat16, f"bf16 autocast as asked{note}"
    if bf16_is_fast(device):
        return torch.bfloat16, "bf16 autocast (a CUDA GPU with bf16 support)"
    return torch.float32, f"fp32 (bf16 autocast is only fast on CUDA GPUs; device is {device})"


def autocast(device: torch.device, dtype: torch.dtype) -> AbstractContextManager:
    """Mixed precision for the forward pass; a no-op for fp32."""
    if dtype == torch.float32:
        return nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)
