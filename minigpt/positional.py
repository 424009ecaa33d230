"""Position information for the model: attention itself has no notion of order. The
sinusoidal table of "Attention Is All You Need", and RoPE's angles and rotation."""

from __future__ import annotations

import math

import torch


def sinusoidal_table(n_pos: int, dim: int) -> torch.Tensor:
    """The fixed sin/cos positions of "Attention Is All You Need", shape (n_pos, dim).

    Even channels get sin(pos / 10000^(2i/dim)), odd channels cos of the same angle:
    geometric wavelengths from 2*pi to 10000*2*pi, every value in [-1, 1].
    """
    pos = torch.arange(n_pos, dtype=torch.float32).unsqueeze(1)  # (n_pos, 1)
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2).float() / dim)
    angles = pos * inv_freq  # (n_pos, dim/2)
    table = torch.zeros(n_pos, dim)
    table[:, 0::2] = torch.sin(angles)
    table[:, 1::2] = torch.cos(angles)
    return table


def rope_cos_sin(n_pos: int, head_size: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of the rotary angles, each (n_pos, head_size/2)."""
    exponents = torch.arange(0, head_size, 2, dtype=torch.int64).float() / head_size
    inv_freq = 1.0 / (theta**exponents)  # (hs/2,) one frequency per channel pair
    angles = torch.outer(torch.arange(n_pos, dtype=torch.float32), inv_freq)  # (n_pos, hs/2)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate channel pairs (i, i + hs/2) of queries or keys by their position's angle.

    x: (B, nh, T, hs); cos, sin: (T, hs/2). The half-split pairing is the one Llama uses,
    so weights map to and from Hugging Face without permuting channels.
    """
    x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hs/2) each
    return torch.cat((x1 * cos - x2 * sin, x2 * cos + x1 * sin), dim=-1).type_as(x)
