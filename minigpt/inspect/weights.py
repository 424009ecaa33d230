"""`inspect weights`: the model's parameters by role, with counts and statistics.

The eight categories a learner meets (embedding, query, key, value, attention output,
up-projection, down-projection, unembedding) plus positions (learned tables only),
norms and biases. With tied embeddings one matrix embeds and unembeds: it counts once,
as the embedding, and the unembedding row says so. Counts sum to the model's parameter
count (`minigpt.parameters.count_parameters`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from minigpt.model import GPT
from minigpt.parameters import PARAM_CATEGORIES, parameter_parts

CATEGORIES = (*PARAM_CATEGORIES, "biases")  # biases apart from their matrices


@dataclass(frozen=True)
class Stats:
    """Count and statistics of a group of parameters (zeros for an empty group)."""

    count: int
    rms: float
    min: float
    max: float


@dataclass(frozen=True)
class WeightRow:
    """One category, over the whole model (layer None) or within one block."""

    category: str
    layer: int | None
    stats: Stats
    share: float  # of the model's total parameter count


@dataclass(frozen=True)
class WeightReport:
    """Every category overall, then per layer, and whether the embedding is tied."""

    total: int
    tied: bool
    categories: list[WeightRow]  # one per CATEGORIES entry, in that order
    layers: list[WeightRow]  # (layer, category) for the categories a block has


def stats(tensors: Sequence[torch.Tensor]) -> Stats:
    """Count, root-mean-square, min and max over all the tensors' values, one tensor at
    a time (no concatenated copy of a category's weights)."""
    count, square_sum, low, high = 0, 0.0, math.inf, -math.inf
    for t in tensors:
        if t.numel() == 0:
            continue
        values = t.detach().float()
        count += values.numel()
        square_sum += float(torch.linalg.vector_norm(values)) ** 2
        low, high = min(low, float(values.min())), max(high, float(values.max()))
    if count == 0:
        return Stats(0, 0.0, 0.0, 0.0)
    return Stats(count, math.sqrt(square_sum / count), low, high)


def weight_report(model: GPT) -> WeightReport:
    """The parameters grouped by role, overall and per block."""
    overall: dict[str, list[torch.Tensor]] = defaultdict(list)
    per_layer: dict[tuple[int, str], list[torch.Tensor]] = defaultdict(list)
    for part in parameter_parts(model):
        category = "biases" if part.is_bias else part.category
        overall[category].append(part.values)
        if part.layer is not None:
            per_layer[(part.layer, category)].append(part.values)
    total = sum(t.numel() for group in overall.values() for t in group)

    def row(category: str, layer: int | None, tensors: list[torch.Tensor]) -> WeightRow:
        s = stats(tensors)
        return WeightRow(category, layer, s, s.count / total if total else 0.0)

    categories = [row(c, None, overall.get(c, [])) for c in CATEGORIES]
    layers = [
        row(c, layer, per_layer[(layer, c)])
        for layer in range(model.config.n_layer)
        for c in CATEGORIES
        if (layer, c) in per_layer
    ]
    return WeightReport(total, model.config.tie_embeddings, categories, layers)
