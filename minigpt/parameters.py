"""Parameters by what they do: the categories `minigpt inspect` and the run header
count (the fused query/key/value matrix split into its parts), the row blocks of fused
parameters (which Muon orthogonalises one by one), and the training FLOPs per token
that MFU is measured against."""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import torch
import torch.nn as nn

from minigpt.config import GPTConfig
from minigpt.model import GPT

PARAM_CATEGORIES = (
    "embedding",
    "positions",
    "query",
    "key",
    "value",
    "attention output",
    "up-projection",
    "down-projection",
    "unembedding",
    "norms",
)


class ParamPart(NamedTuple):
    """One parameter, or the query, key or value part of the fused one, by role."""

    category: str  # one of PARAM_CATEGORIES
    layer: int | None  # the block it belongs to; None outside the blocks
    name: str  # the parameter's name, with "[query]" etc. for a part of c_attn
    values: torch.Tensor  # a view of the weights
    is_bias: bool


def fused_rows(config: GPTConfig, name: str) -> tuple[int, ...] | None:
    """The row blocks of a parameter that stacks several matrices, or None for one matrix.

    The fused `c_attn` weight is [W^Q; W^K; W^V] (n_embd, kv_size and kv_size rows) and
    SwiGLU's `c_fc` weight is [W^gate; W^up] (hidden_size rows each); their biases split
    the same way.
    """
    if ".attn.c_attn." in name:
        return (config.n_embd, config.kv_size, config.kv_size)
    if ".mlp.c_fc." in name and config.mlp == "swiglu":
        return (config.hidden_size, config.hidden_size)
    return None


def parameter_parts(model: GPT) -> Iterator[ParamPart]:
    """Every parameter by role; tied weights are listed once (as the embedding).

    The fused `c_attn` matrix (and its bias) is split into query, key and value parts:
    rows [0, d) are Q, then kv_size rows of K and kv_size of V (kv_size = d without
    grouped-query attention, so thirds).
    """
    for name, p in model.named_parameters():  # shared parameters are listed once
        layer = int(name.split(".")[1]) if name.startswith("h.") else None
        is_bias = name.endswith(".bias") and ".ln_" not in name and not name.startswith("ln_f.")
        if ".attn.c_attn." in name:
            parts = p.split(fused_rows(model.config, name), dim=0)
            for part, values in zip(("query", "key", "value"), parts, strict=True):
                yield ParamPart(part, layer, f"{name}[{part}]", values, is_bias)
        else:
            yield ParamPart(_category(name), layer, name, p, is_bias)


def _category(name: str) -> str:
    """The role of a parameter that is not the fused c_attn."""
    for prefix, category in (("wte.", "embedding"), ("wpe.", "positions"),
                             ("lm_head.", "unembedding"), ("ln_f.", "norms")):  # fmt: skip
        if name.startswith(prefix):
            return category
    for part, category in ((".attn.c_proj.", "attention output"), (".mlp.c_fc.", "up-projection"),
                           (".mlp.c_proj.", "down-projection"), (".ln_", "norms")):  # fmt: skip
        if part in name:
            return category
    raise ValueError(f"parameter {name} has no category")


def count_parameters(model: GPT) -> dict[str, int]:
    """Parameters per category (biases count with their matrix); tied weights count once.

    With tied embeddings the unembedding is the embedding matrix, so it counts as 0 here.
    """
    counts = dict.fromkeys(PARAM_CATEGORIES, 0)
    for part in parameter_parts(model):
        counts[part.category] += part.values.numel()
    return counts


def flops_per_token(config: GPTConfig) -> int:
    """Training FLOPs per token: 6 per matmul weight (2 forward, 4 backward) plus the
    attention scores and weighted sum, 12 x n_layer x n_embd x block_size (PaLM,
    appendix B; the causal mask's saved half is not subtracted). Grouped-query attention
    has fewer key/value weights (counted from the layers), but every query head still
    scores and sums over its keys, so the attention term keeps n_embd = n_head x hs."""
    with torch.device("meta"):
        model = GPT(config)
    matmul = sum(m.weight.numel() for m in model.modules() if isinstance(m, nn.Linear))
    return 6 * matmul + 12 * config.n_layer * config.n_embd * config.block_size
