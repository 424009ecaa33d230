"""Whether a model suits the amount of text it trains on: the small-data warning a run
reports first, and what to train instead. The suggestion is a preset whose parameter
count, for this vocabulary, fits the data; when no preset is that small, the layers,
heads and width to give on top of the shape in use (its positions, norm, MLP and
context kept), counted exactly for this vocabulary.
"""

from __future__ import annotations

import math
from dataclasses import replace

import torch

from minigpt.config import GPTConfig
from minigpt.model import GPT
from minigpt.parameters import count_parameters
from minigpt.presets import PRESETS, preset

MIN_TOKENS_PER_PARAM = 0.25  # below this the model can memorise the data (see README)
MIN_HEAD_SIZE = 8  # narrower attention heads are not worth suggesting
WIDTHS = (8, 16, 24, 32, 48, 64, 96, 128, 192, 256, 384, 512, 768, 1024)  # widths suggested


def shape_parameters(config: GPTConfig) -> int:
    """The exact parameter count of a model of this shape (tied weights once), counted
    on the meta device: nothing is allocated."""
    with torch.device("meta"):
        model = GPT(config)
    return sum(count_parameters(model).values())


def dataset_size_warning(
    train_tokens: int, config: GPTConfig, num_params: int, max_block: int
) -> str | None:
    """A warning when the training split is small for the model, naming a model that
    suits it. `max_block`: the longest context both splits hold (a preset suggested
    must fit it)."""
    if train_tokens >= MIN_TOKENS_PER_PARAM * num_params:
        return None
    budget = int(train_tokens / MIN_TOKENS_PER_PARAM)
    return (
        f"the training split has {train_tokens:,} tokens for {num_params:,} parameters "
        f"({train_tokens / num_params:.2f} tokens per parameter); the model may memorise "
        f"it. A model of about {budget:,} parameters or fewer suits it: "
        f"{smaller_model(config, budget, max_block)}"
    )


def smaller_model(config: GPTConfig, budget: int, max_block: int) -> str:
    """What to train instead, with its parameter count: the largest preset of at most
    `budget` parameters, else shape options on top of `config`, else more text."""
    sizes = preset_sizes(config.vocab_size, max_block)
    fitting = [(n, name) for name, n in sizes.items() if n <= budget]
    if fitting:
        n, name = max(fitting)
        return f"--preset {name} ({n:,} parameters), or give more text"
    no_preset = "no preset is that small"
    if sizes:
        n, name = min((n, name) for name, n in sizes.items())
        no_preset += f" ({name} has {n:,} with this vocabulary)"
    shape = smaller_shape(config, budget)
    if shape is None:
        smallest = shape_parameters(_shape(config, 1, WIDTHS[0]))
        return (
            f"{no_preset}, nor is any shape with a vocabulary of {config.vocab_size:,} tokens "
            f"(1 layer of width {WIDTHS[0]} has {smallest:,}); give more text"
        )
    n = shape_parameters(shape)
    kv = "" if shape.n_kv_head is None else f" --n-kv-head {shape.n_kv_head}"
    return (
        f"{no_preset}; add --n-layer {shape.n_layer} --n-head {shape.n_head}{kv} "
        f"--n-embd {shape.n_embd} ({n:,} parameters), or give more text"
    )


def preset_sizes(vocab_size: int | None, max_block: int) -> dict[str, int]:
    """The parameter count of each preset whose context the data holds, for this vocabulary."""
    sizes = {}
    for name in PRESETS:
        fields = preset(name)[0]
        if fields["block_size"] <= max_block:
            sizes[name] = shape_parameters(GPTConfig(vocab_size=vocab_size, **fields))
    return sizes


def smaller_shape(config: GPTConfig, budget: int) -> GPTConfig | None:
    """The largest shape of at most `budget` parameters with no more layers, heads or
    width than `config`, and its positions, norm, MLP, context and vocabulary."""
    candidates = [
        _shape(config, n_layer, width)
        for n_layer in range(1, config.n_layer + 1)
        for width in WIDTHS
        if width <= config.n_embd
    ]
    # Largest first by the closed-form estimate; the exact count decides.
    for shape in sorted(candidates, key=GPTConfig.approx_num_params, reverse=True):
        if shape.approx_num_params() <= budget and shape_parameters(shape) <= budget:
            return shape
    return None


def _shape(config: GPTConfig, n_layer: int, width: int) -> GPTConfig:
    """`config` with n_layer blocks of this width, and the most heads (up to its own)
    that divide the width into heads of MIN_HEAD_SIZE or more (an even size for rope);
    with grouped-query attention, the most key/value heads (up to its own) that divide
    those heads."""
    heads = [
        h
        for h in range(1, config.n_head + 1)
        if width % h == 0
        and width // h >= min(MIN_HEAD_SIZE, width)
        and (config.pos_encoding != "rope" or (width // h) % 2 == 0)
    ]
    n_head = max(heads)
    n_kv_head = None if config.n_kv_head is None else math.gcd(n_head, config.n_kv_head)
    return replace(
        config, n_layer=n_layer, n_embd=width, n_head=n_head, n_kv_head=n_kv_head, n_inner=None
    )
