"""What an inspecting forward pass records (`GPT.forward(idx, trace=Trace())`), and the
attention written out step by step that records it; `minigpt.inspect` reads it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch


@dataclass
class Trace:
    """Filled by `GPT.forward(idx, trace=...)`, one entry per layer (B = batch, nh =
    heads, T = new tokens, Tk = keys seen): `scores` the raw Q K^T (B, nh, T, Tk) after
    RoPE if any, `attention` softmax(Q K^T / sqrt(d_k) + causal mask) (B, nh, T, Tk),
    and `residual` the stream (B, T, C) after the embedding and after each block
    (n_layer + 1 entries). Dropout is not applied: trace a model in eval mode."""

    scores: list[torch.Tensor] = field(default_factory=list)
    attention: list[torch.Tensor] = field(default_factory=list)
    residual: list[torch.Tensor] = field(default_factory=list)


def traced_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, trace: Trace
) -> torch.Tensor:
    """softmax(Q K^T / sqrt(d_k) + mask) V written out step by step, recording the
    scores and weights: q (B, nh, T, hs) at the last T of the Tk key positions, k and v
    (B, nkv, Tk, hs). Query i sits at position Tk - T + i and sees keys 0..Tk - T + i.
    With grouped-query attention (nkv < nh) each key/value head serves nh / nkv query
    heads in a row; it is repeated for them, so the trace has one entry per query head."""
    k, v = repeat_kv(k, q.size(1)), repeat_kv(v, q.size(1))  # (B, nh, Tk, hs)
    T, Tk = q.size(-2), k.size(-2)
    scores = q @ k.transpose(-2, -1)  # (B, nh, T, Tk)
    allowed = torch.ones(T, Tk, dtype=torch.bool, device=q.device).tril(diagonal=Tk - T)
    scaled = scores / math.sqrt(q.size(-1))
    weights = torch.softmax(scaled.masked_fill(~allowed, float("-inf")), dim=-1)
    trace.scores.append(scores)
    trace.attention.append(weights)
    return weights @ v  # (B, nh, T, hs)


def repeat_kv(x: torch.Tensor, n_head: int) -> torch.Tensor:
    """Keys or values (B, nkv, Tk, hs) with each head repeated for its group of query
    heads: (B, n_head, Tk, hs), query head h reading key/value head h // (n_head / nkv)
    (Llama's `repeat_kv`). The tensor itself when nkv == n_head."""
    n_kv = x.size(1)
    return x if n_kv == n_head else x.repeat_interleave(n_head // n_kv, dim=1)
