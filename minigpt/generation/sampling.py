"""Turning logits into tokens: pure filters over logits, `sample_next_token`, `generate`.

For each new token the logits (B, V) pass through these steps, always in this order:

1. mask ids the tokenizer does not have (padding rows of a larger embedding);
2. penalties over the last `penalty_window` context tokens: repetition (a seen
   token's logit is divided by the penalty when positive, multiplied when negative),
   presence (minus a constant once per seen token), frequency (minus a constant per
   occurrence);
3. temperature: T = 0 takes the argmax here and skips the rest; otherwise the
   logits are shifted so the largest is 0 (nothing overflows, even at T = 1e-8)
   and divided by T;
4. top-k: keep exactly the k largest (ties broken by the lower id);
5. top-p: keep the smallest set of likeliest tokens whose probability reaches p;
6. min-p: drop tokens whose probability is below min_p x the likeliest one's;
7. softmax, and one draw per row from an explicit `torch.Generator`.

Every filter keeps the likeliest token, so a distribution never empties and never
holds a NaN. Logits the model made NaN count as -inf; if no finite logit is left,
generation stops with a `GenerationError`. `generate` yields one `Step` per token
(the ids, and the log-probability the model gave them); the caller decodes and prints.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from minigpt.config import SampleConfig
from minigpt.errors import GenerationError, TokenizerError
from minigpt.generation.context import ModelContext
from minigpt.model import GPT
from minigpt.tokenizer.encodings import Tokenizer

NEG_INF = float("-inf")


def mask_padded_ids(logits: torch.Tensor, valid_vocab: int) -> torch.Tensor:
    """Ids >= valid_vocab (padding rows of a larger embedding) can never be drawn."""
    if valid_vocab >= logits.size(-1):
        return logits
    logits = logits.clone()
    logits[..., valid_vocab:] = NEG_INF
    return logits


def apply_penalties(
    logits: torch.Tensor, recent: torch.Tensor, config: SampleConfig
) -> torch.Tensor:
    """Repetition, presence and frequency penalties for the ids in `recent` (B, W)."""
    counts = torch.zeros_like(logits).scatter_add_(
        -1, recent, torch.ones_like(recent, dtype=logits.dtype)
    )  # (B, V) occurrences of each id in the window
    seen = counts > 0
    r = config.repetition_penalty
    if r != 1.0:
        penalized = torch.where(logits > 0, logits / r, logits * r)
        logits = torch.where(seen, penalized, logits)
    return logits - config.presence_penalty * seen - config.frequency_penalty * counts


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """T > 1 flattens the distribution, T < 1 sharpens it. T must be > 0 here.

    The largest logit is shifted to 0 first, so even a tiny T cannot overflow."""
    top = logits.max(dim=-1, keepdim=True).values  # (B, 1), finite: see _finite_logits
    return (logits - top) / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep exactly the k largest logits per row (ties go to the lower id), -inf elsewhere."""
    if k >= logits.size(-1):
        return logits
    # A stable sort keeps equal logits in id order (torch.topk promises no order).
    keep = torch.sort(logits, dim=-1, descending=True, stable=True).indices[..., :k]  # (B, k)
    mask = torch.ones_like(logits, dtype=torch.bool).scatter_(-1, keep, False)
    return logits.masked_fill(mask, NEG_INF)


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Keep the smallest set of likeliest tokens whose probability sum reaches p."""
    if p >= 1.0:
        return logits
    sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
    probs = torch.softmax(sorted_logits, dim=-1)
    # A token is dropped when the tokens ranked above it already reach p; the top
    # token always stays.
    drop_sorted = (probs.cumsum(dim=-1) - probs) >= p
    drop_sorted[..., 0] = False
    drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


def min_p_filter(logits: torch.Tensor, min_p: float) -> torch.Tensor:
    """Drop tokens whose probability is below min_p times the likeliest token's."""
    if min_p <= 0.0:
        return logits
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    floor = min_p * probs.max(dim=-1, keepdim=True).values  # (B, 1)
    return logits.masked_fill(probs < floor, NEG_INF)


def sample_next_token(
    logits: torch.Tensor,
    config: SampleConfig,
    generator: torch.Generator | None = None,
    valid_vocab: int | None = None,
    recent: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token id per row of logits (B, V) -> (B,), by the steps in the module doc.

    `recent` (B, W) holds the context ids the penalties look at (None: no penalties)."""
    return _draw(_finite_logits(logits.float(), valid_vocab), config, generator, recent)


def _draw(
    logits: torch.Tensor,
    config: SampleConfig,
    generator: torch.Generator | None,
    recent: torch.Tensor | None,
) -> torch.Tensor:
    """sample_next_token for logits already made finite (steps 2 to 7)."""
    if recent is not None and config.penalized:
        penalized = apply_penalties(logits, recent[:, -config.penalty_window :], config)
        logits = _keep_finite(penalized, fallback=logits)
    if config.temperature == 0.0:
        return torch.argmax(logits, dim=-1)
    logits = apply_temperature(logits, config.temperature)
    if config.top_k is not None:
        logits = top_k_filter(logits, config.top_k)
    if config.top_p is not None:
        logits = top_p_filter(logits, config.top_p)
    if config.min_p is not None:
        logits = min_p_filter(logits, config.min_p)
    probs = torch.softmax(logits, dim=-1)  # (B, V)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def _keep_finite(logits: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    """Overflow from a penalty clamped; a row it left with no finite logit (every
    token penalised away) falls back to its unpenalised logits."""
    logits = _clamp(logits)
    usable = torch.isfinite(logits).any(dim=-1, keepdim=True)  # (B, 1)
    return torch.where(usable, logits, fallback)


def _clamp(logits: torch.Tensor) -> torch.Tensor:
    """NaN as -inf, +inf as the largest finite float."""
    biggest = torch.finfo(logits.dtype).max
    return torch.nan_to_num(logits, nan=NEG_INF, posinf=biggest, neginf=NEG_INF)


def _finite_logits(logits: torch.Tensor, valid_vocab: int | None) -> torch.Tensor:
    """Padded ids masked, NaN as -inf, +inf as the largest float; every row keeps a
    finite logit or this raises."""
    if valid_vocab is not None:
        logits = mask_padded_ids(logits, valid_vocab)
    logits = _clamp(logits)
    if not bool(torch.isfinite(logits).any(dim=-1).all()):
        raise GenerationError(
            "the model produced no finite logits (NaN or infinite everywhere); "
            "its weights are damaged: use another checkpoint"
        )
    return logits


# ---------------------------------------------------------------------------------
# Generation: an iterator of steps over a ModelContext (its token ids and KV cache).


@dataclass
class Step:
    """One generated position for B sequences."""

    token: torch.Tensor  # (B,) the ids drawn
    logprob: torch.Tensor  # (B,) log-probability the model gave them (T = 1, no filters)
    top_ids: torch.Tensor | None = None  # (B, n) the model's n likeliest ids
    top_logprobs: torch.Tensor | None = None  # (B, n) and their log-probabilities


def prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """The ids to start from: the encoded prompt, or for an empty prompt a newline
    (text models see it often), else `<|endoftext|>`, else id 0."""
    if prompt:
        return tokenizer.encode(prompt)
    try:
        return tokenizer.encode("\n")
    except TokenizerError:
        return [tokenizer.eot_id if tokenizer.eot_id is not None else 0]


def generate(
    model: GPT,
    prompt: torch.Tensor,
    config: SampleConfig,
    generator: torch.Generator | None = None,
    valid_vocab: int | None = None,
    *,
    use_cache: bool = True,
    top: int = 0,
) -> Iterator[Step]:
    """Yield up to config.max_new_tokens steps after prompt ids (B, T).

    A one-row prompt with config.num_samples > 1 is prefilled once and then decoded
    as num_samples rows. With the cache each step runs one position; without it the
    whole context runs again (same tokens, far slower). `top` > 0 records the model's
    `top` likeliest alternatives in each step. The prompt is prefilled by the call
    itself, so a prompt or batch that cannot run fails here, not at the first step.
    """
    if prompt.size(1) == 0:
        raise ValueError("the prompt needs at least one token (see prompt_ids)")
    if prompt.size(0) > 1 and config.num_samples > 1:
        raise ValueError("num_samples > 1 needs a one-row prompt: its rows are the samples")
    # The context never holds more than the prompt and the new tokens (nor block_size).
    capacity = prompt.size(1) + config.max_new_tokens
    context = ModelContext(model, prompt.size(0), use_cache=use_cache, capacity=capacity)
    logits = context.feed(prompt)  # (B, V)
    if prompt.size(0) == 1 and config.num_samples > 1:
        context.repeat(config.num_samples)
        logits = logits.expand(config.num_samples, -1)
    return decode(context, logits, config, generator, valid_vocab, top=top)


@torch.inference_mode()
def decode(
    context: ModelContext,
    logits: torch.Tensor,
    config: SampleConfig,
    generator: torch.Generator | None = None,
    valid_vocab: int | None = None,
    *,
    top: int = 0,
) -> Iterator[Step]:
    """Draw from `logits` (B, V), feed the draw back, repeat: up to max_new_tokens steps.

    The last token drawn is not fed (nothing would read its logits); a caller that
    goes on from this context feeds it first (`ModelContext.sync` does)."""
    for i in range(config.max_new_tokens):
        finite = _finite_logits(logits, valid_vocab)  # (B, V), once for the draw and the record
        recent = context.tokens if config.penalized else None
        token = _draw(finite, config, generator, recent)  # (B,)
        yield _step(finite, token, top)
        if i + 1 < config.max_new_tokens:
            logits = context.feed(token.unsqueeze(1))


def _step(logits: torch.Tensor, token: torch.Tensor, top: int) -> Step:
    """The model's own view of the drawn tokens: log-probabilities at temperature 1."""
    logprobs = torch.log_softmax(logits, dim=-1)  # (B, V)
    step = Step(token, logprobs.gather(-1, token.unsqueeze(-1)).squeeze(-1))
    if top > 0:
        values, ids = logprobs.topk(min(top, logprobs.size(-1)), dim=-1)  # (B, n)
        step.top_ids, step.top_logprobs = ids, values
    return step
