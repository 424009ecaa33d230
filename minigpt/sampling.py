"""Turning logits into tokens: pure logit filters, `sample_next_token`, `generate`.

The filters apply in a fixed order: mask ids the tokenizer does not have, divide by
the temperature, keep the top-k, keep the top-p nucleus, then softmax and draw with
an explicit `torch.Generator` (so the same seed gives the same tokens). Temperature 0
is greedy argmax. `generate` is an iterator of token ids; the caller decodes and prints.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch

from minigpt.config import SampleConfig
from minigpt.errors import TokenizerError
from minigpt.model import GPT, KVCache
from minigpt.tokenizer import Tokenizer


def mask_padded_ids(logits: torch.Tensor, valid_vocab: int) -> torch.Tensor:
    """Ids >= valid_vocab (padding rows of a larger embedding) can never be drawn."""
    if valid_vocab >= logits.size(-1):
        return logits
    logits = logits.clone()
    logits[..., valid_vocab:] = float("-inf")
    return logits


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T > 1 flattens the distribution, T < 1 sharpens it. T must be > 0 here."""
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the k largest logits per row (ties broken by index), -inf elsewhere."""
    if k >= logits.size(-1):
        return logits
    _, keep = torch.topk(logits, k, dim=-1)  # (B, k)
    mask = torch.ones_like(logits, dtype=torch.bool).scatter_(-1, keep, False)
    return logits.masked_fill(mask, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of likeliest tokens whose probability sum reaches p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    # A token is dropped when the tokens ranked above it already reach p; the top
    # token always stays.
    drop_sorted = (probs.cumsum(dim=-1) - probs) >= p
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, float("-inf"))


def sample_next_token(
    logits: torch.Tensor,
    config: SampleConfig,
    generator: torch.Generator | None = None,
    valid_vocab: int | None = None,
) -> torch.Tensor:
    """One token id per row of logits (B, V) -> (B,)."""
    logits = logits.float()
    if valid_vocab is not None:
        logits = mask_padded_ids(logits, valid_vocab)
    if config.temperature == 0.0:
        return torch.argmax(logits, dim=-1)
    logits = apply_temperature(logits, config.temperature)
    if config.top_k is not None:
        logits = top_k_filter(logits, config.top_k)
    if config.top_p is not None:
        logits = top_p_filter(logits, config.top_p)
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """The ids to start from: the encoded prompt, or for an empty prompt a newline
    (text models see it often), else `<|endoftext|>`, else id 0."""
    if prompt:
        return tokenizer.encode(prompt)
    try:
        return tokenizer.encode("\n")
    except TokenizerError:
        return [tokenizer.eot_id if tokenizer.eot_id is not None else 0]


@torch.inference_mode()
def generate(
    model: GPT,
    prompt: torch.Tensor,
    config: SampleConfig,
    generator: torch.Generator | None = None,
    valid_vocab: int | None = None,
) -> Iterator[torch.Tensor]:
    """Yield config.max_new_tokens next tokens (B,) for prompt ids (B, T).

    The prompt is prefilled into a KV cache once; each new token is then one forward
    pass of a single position. The model never sees more than block_size tokens: when
    the cache is full, the last half window is prefilled again and decoding goes on.
    """
    block_size = model.config.block_size
    device = prompt.device
    cache = KVCache(model.config, prompt.size(0), device=device, dtype=_param_dtype(model))
    context = prompt[:, -block_size:]  # (B, <= block_size)
    history = context
    logits = model(context, kv_cache=cache)[:, -1, :]  # (B, V)
    for _ in range(config.max_new_tokens):
        token = sample_next_token(logits, config, generator, valid_vocab)  # (B,)
        yield token
        history = torch.cat((history, token.unsqueeze(1)), dim=1)[:, -block_size:]
        if cache.pos >= block_size:
            cache.reset()
            keep = max(1, block_size // 2)
            logits = model(history[:, -keep:], kv_cache=cache)[:, -1, :]
        else:
            logits = model(token.unsqueeze(1), kv_cache=cache)[:, -1, :]


def _param_dtype(model: GPT) -> torch.dtype:
    return next(model.parameters()).dtype
