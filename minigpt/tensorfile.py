"""safetensors files written one tensor at a time, so saving never holds a second copy
of the weights in memory (`safetensors.torch.save_file` first turns every tensor into
Python bytes). Reading stays with the safetensors library.

The format: an 8-byte little-endian header length, a JSON header (padded with spaces to
a multiple of 8) giving each tensor's dtype, shape and byte range, then the tensors'
bytes back to back in the header's order.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from pathlib import Path

import torch

DTYPES = {
    torch.float64: "F64", torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16",
    torch.int64: "I64", torch.int32: "I32", torch.int16: "I16", torch.int8: "I8",
    torch.uint8: "U8", torch.bool: "BOOL",
}  # fmt: skip
ALIGN = 8


def header(tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None) -> bytes:
    """The length-prefixed, padded JSON header for `tensors` in their order."""
    entries: dict[str, object] = {"__metadata__": metadata} if metadata else {}
    offset = 0
    for name, t in tensors.items():
        if t.dtype not in DTYPES:
            raise ValueError(f"tensor {name} has dtype {t.dtype}, which safetensors cannot hold")
        size = t.numel() * t.element_size()
        entries[name] = {
            "dtype": DTYPES[t.dtype],
            "shape": list(t.shape),
            "data_offsets": [offset, offset + size],
        }
        offset += size
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % ALIGN)
    return struct.pack("<Q", len(text)) + text


def write_safetensors(
    path: Path, tensors: Mapping[str, torch.Tensor], metadata: dict[str, str] | None = None
) -> None:
    """Write `tensors` (on any device) to `path`, one tensor's bytes at a time."""
    with open(path, "wb") as f:
        f.write(header(tensors, metadata))
        for t in tensors.values():
            data = t.detach().to("cpu").contiguous().reshape(-1)
            if data.numel():
                f.write(memoryview(data.view(torch.uint8).numpy()))


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
