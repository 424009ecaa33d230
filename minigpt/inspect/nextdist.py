"""`inspect next`: the next-token distribution at several temperatures, and where
top-k, top-p and min-p cut it.

The numbers come from the sampler's own functions (`minigpt.generation.sampling`):
the padded ids and the UTF-8 mask first, then for each temperature
`shape_logits` (temperature, top-k, top-p, min-p) and the softmax `sample` draws from.
Temperature 0 is greedy: the likeliest token with probability 1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from minigpt.config import SampleConfig
from minigpt.generation.sampling import finite_logits, mask_blocked, shape_logits
from minigpt.generation.utf8 import build_tables
from minigpt.inspect.forward import prompt_tokens, token_label, token_labels
from minigpt.model import GPT
from minigpt.tokenizer.encodings import Tokenizer


@dataclass(frozen=True)
class AtTemperature:
    """The distribution `sample` draws from at one temperature."""

    temperature: float
    probs: torch.Tensor  # (V,) after the filters; 0 where cut
    entropy_bits: float  # of the tempered distribution before the filters
    kept: int  # tokens left after every filter
    kept_by: dict[str, int]  # tokens each filter alone would keep


@dataclass(frozen=True)
class NextView:
    """The prompt, the model's own distribution (T = 1, no filters), each temperature's,
    and the tokens to show (the model's likeliest)."""

    labels: list[str]
    model_probs: torch.Tensor  # (V,)
    temperatures: list[AtTemperature]
    top_ids: list[int]
    top_labels: list[str]


def entropy_bits(logits: torch.Tensor) -> float:
    """Entropy in bits of softmax(logits) (V,); -inf entries count as probability 0."""
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    return float(-(p * logp).nan_to_num(0.0).sum() / math.log(2))


def at_temperature(logits: torch.Tensor, config: SampleConfig) -> AtTemperature:
    """What the sampler makes of allowed logits (1, V) with `config`'s settings."""
    if config.temperature == 0.0:
        probs = torch.zeros_like(logits[0])
        probs[int(logits[0].argmax())] = 1.0
        ones = {name: 1 for name in _filters(config)}
        return AtTemperature(0.0, probs, 0.0, 1, ones)
    tempered = shape_logits(logits, replace(config, top_k=None, top_p=None, min_p=None))
    probs = torch.softmax(shape_logits(logits, config), dim=-1)[0]
    kept_by = {
        name: int(torch.isfinite(shape_logits(logits, alone)).sum())
        for name, alone in _filters(config).items()
    }
    return AtTemperature(
        config.temperature, probs, entropy_bits(tempered[0]), int((probs > 0).sum()), kept_by
    )


def _filters(config: SampleConfig) -> dict[str, SampleConfig]:
    """Each filter `config` sets, alone, at `config`'s temperature."""
    alone = replace(config, top_k=None, top_p=None, min_p=None)
    out = {}
    if config.top_k is not None:
        out["top-k"] = replace(alone, top_k=config.top_k)
    if config.top_p is not None:
        out["top-p"] = replace(alone, top_p=config.top_p)
    if config.min_p is not None:
        out["min-p"] = replace(alone, min_p=config.min_p)
    return out


@torch.no_grad()
def next_distribution(
    model: GPT,
    tokenizer: Tokenizer,
    text: str,
    temperatures: list[float],
    config: SampleConfig,
    show: int = 10,
) -> NextView:
    """The next token after `text` at each temperature, with `config`'s filters."""
    ids = prompt_tokens(tokenizer, text, model.config.block_size)
    return next_after_ids(model, tokenizer, ids, temperatures, config, show)


def next_after_ids(
    model: GPT,
    tokenizer: Tokenizer,
    ids: list[int],
    temperatures: list[float],
    config: SampleConfig,
    show: int = 10,
) -> NextView:
    """The next token after the ids (1 to block_size) at each temperature."""
    was_training = model.training
    model.eval()
    try:
        raw = model(torch.tensor([ids], device=model.device), last_only=True)[:, -1].float()
    finally:
        model.train(was_training)
    logits = finite_logits(raw.cpu(), tokenizer.vocab_size)  # (1, V)
    tables = build_tables(tokenizer, logits.size(-1))
    blocked = tables.rows(1).blocked() if tables is not None else None
    allowed, _ = mask_blocked(logits, blocked)
    views = [at_temperature(allowed, replace(config, temperature=t)) for t in temperatures]
    model_probs = torch.softmax(allowed, dim=-1)[0]
    top = torch.topk(model_probs, min(show, int((model_probs > 0).sum()))).indices.tolist()
    return NextView(
        token_labels(tokenizer, ids),
        model_probs,
        views,
        top,
        [token_label(tokenizer, i) for i in top],
    )
