"""`inspect attention`: where each head looks, and the four stages of one head.

A head's picture in "Attention Is All You Need": scores Q K^T, scaled by 1/sqrt(d_k),
masked (a query never sees a later key: -inf above the diagonal), softmax over each
row. The weights are the ones the model used (`minigpt.model.Trace`); the stages are
derived from the same recorded scores.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from minigpt.errors import ConfigError
from minigpt.inspect.forward import Traced

STAGES = ("scores", "scaled", "masked", "softmax")


@dataclass(frozen=True)
class HeadStages:
    """One head's four stages, each (T, T): query rows, key columns."""

    layer: int
    head: int
    d_k: int
    scores: torch.Tensor  # Q K^T
    scaled: torch.Tensor  # Q K^T / sqrt(d_k)
    masked: torch.Tensor  # -inf where the key comes after the query
    softmax: torch.Tensor  # each row sums to 1


def check_head(traced: Traced, layer: int | None, head: int | None) -> None:
    """Refuse a layer or head the model does not have (both count from 0)."""
    n_layer = len(traced.trace.attention)
    n_head = traced.trace.attention[0].size(0)
    if layer is not None and not 0 <= layer < n_layer:
        raise ConfigError(f"--layer {layer} is out of range: the model has layers 0..{n_layer - 1}")
    if head is not None and not 0 <= head < n_head:
        raise ConfigError(f"--head {head} is out of range: the model has heads 0..{n_head - 1}")


def attention_lists(traced: Traced) -> list[list[list[list[float]]]]:
    """Every head's weights as [layer][head][query][key] (zeros above the diagonal)."""
    return [weights.tolist() for weights in traced.trace.attention]


def head_stages(traced: Traced, layer: int, head: int) -> HeadStages:
    """The four stages of `head` in `layer`."""
    check_head(traced, layer, head)
    scores = traced.trace.scores[layer][head]  # (T, T)
    d_k = traced.trace.residual[0].size(-1) // traced.trace.attention[0].size(0)
    scaled = scores / math.sqrt(d_k)
    T = scores.size(0)
    future = torch.ones(T, T, dtype=torch.bool, device=scores.device).triu(diagonal=1)
    masked = scaled.masked_fill(future, float("-inf"))
    return HeadStages(layer, head, d_k, scores, scaled, masked, traced.trace.attention[layer][head])
