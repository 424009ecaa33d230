"""minigpt.tensorfile: safetensors written tensor by tensor, read back by the
safetensors library exactly (every dtype, empty and non-contiguous tensors, metadata)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from minigpt.tensorfile import DTYPES, write_safetensors


def test_every_dtype_round_trips_through_the_safetensors_library(tmp_path: Path) -> None:
    torch.manual_seed(0)
    tensors = {f"t{i}": (torch.randn(3, 5) * 50).to(dtype) for i, dtype in enumerate(DTYPES)}
    tensors |= {
        "empty": torch.zeros(0, 4),
        "scalar": torch.tensor(2.5),
        "transposed": torch.randn(4, 6).t(),  # not contiguous
        "odd": torch.arange(3, dtype=torch.uint8),  # 3 bytes: the next tensor is unaligned
        "after": torch.randn(2),
    }
    path = tmp_path / "w.safetensors"
    write_safetensors(path, tensors, {"format": "pt"})
    back = load_file(path)
    assert back.keys() == tensors.keys()
    for name, t in tensors.items():
        assert back[name].dtype == t.dtype and torch.equal(back[name], t), name
    with safe_open(path, framework="pt") as f:
        assert f.metadata() == {"format": "pt"}


def test_the_file_follows_the_umask_and_refuses_an_unknown_dtype(tmp_path: Path) -> None:
    old = os.umask(0o027)
    try:
        write_safetensors(tmp_path / "a.safetensors", {"x": torch.ones(2)})
    finally:
        os.umask(old)
    assert (tmp_path / "a.safetensors").stat().st_mode & 0o777 == 0o640
    with pytest.raises(ValueError, match="complex64"):
        write_safetensors(tmp_path / "b.safetensors", {"z": torch.ones(2, dtype=torch.complex64)})
