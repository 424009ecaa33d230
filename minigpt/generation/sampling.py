"""Turning logits into tokens: pure functions over logits, up to `sample_next_token`.

For each new token the logits (B, V) pass through these steps, always in this order:

1. mask what can never come next: ids the tokenizer does not have (padding rows of
   a larger embedding), and in each row the ids whose bytes cannot continue the
   row's text as valid UTF-8 (`blocked`, from `minigpt.generation.utf8`), so that
   every later step sees only tokens that keep the text whole characters;
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

`draw` also returns the probability each drawn token had in the distribution it was
drawn from (after steps 1 to 6; 1 for greedy), beside which the model's own
probability (temperature 1, no filters, no mask) shows what the settings changed.

Every filter keeps the likeliest token, so a distribution never empties and never
holds a NaN. Logits the model made NaN count as -inf; if no finite logit is left,
generation stops with a `GenerationError`. A row whose UTF-8 mask leaves no finite
logit (the model gave NaN to every token that could come next) is `stuck`: the
generation path ends that sequence there (`sample_next_token` raises). Nothing here
holds state or runs the model: the loop that does is `minigpt.generation.generate`.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from minigpt.config import SampleConfig
from minigpt.errors import GenerationError

NEG_INF = float("-inf")


def mask_padded_ids(logits: torch.Tensor, valid_vocab: int) -> torch.Tensor:
    """Ids >= valid_vocab (padding rows of a larger embedding) can never be drawn."""
    if valid_vocab >= logits.size(-1):
        return logits
    logits = logits.clone()
    logits[..., valid_vocab:] = NEG_INF
    return logits


def mask_blocked(
    logits: torch.Tensor, blocked: torch.Tensor | None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Each row's `blocked` (B, V) ids at -inf (the UTF-8 mask; None: nothing blocked).

    Also returns the rows `stuck` (B,) with no finite logit left, None when there is
    none: those rows keep their logits unmasked, for the caller to end them."""
    if blocked is None:
        return logits, None
    masked = logits.masked_fill(blocked, NEG_INF)  # (B, V)
    stuck = masked.amax(dim=-1) == NEG_INF  # (B,)
    if not bool(stuck.any()):
        return masked, None
    return torch.where(stuck.unsqueeze(-1), logits, masked), stuck


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
    top = logits.max(dim=-1, keepdim=True).values  # (B, 1), finite: see finite_logits
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
    blocked: torch.Tensor | None = None,
) -> torch.Tensor:
    """One token id per row of logits (B, V) -> (B,), by the steps in the module doc.

    `recent` (B, W) holds the context ids the penalties look at (None: no penalties);
    `blocked` (B, V) the ids each row may not draw (None: none). A row left with no
    finite logit raises a `GenerationError`."""
    allowed, stuck = mask_blocked(finite_logits(logits.float(), valid_vocab), blocked)
    if stuck is not None:
        raise GenerationError(
            "the model gave no finite logit to any token that can come next "
            "(its weights are damaged): use another checkpoint"
        )
    return draw(allowed, config, generator, recent)[0]


# One generator for every row, or consecutive segments of rows each drawn with its own
# (generator, rows): requests decoded together, each with its random stream.
Generators = torch.Generator | None | Sequence[tuple[torch.Generator | None, int]]


def draw(
    logits: torch.Tensor,
    config: SampleConfig,
    generator: Generators,
    recent: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """sample_next_token for logits already made finite by `finite_logits` and masked
    by `mask_blocked` (steps 2 to 7):
    the ids drawn (B,), and the probability (B,) each had in the distribution drawn from."""
    if recent is not None and config.penalized:
        penalized = apply_penalties(logits, recent[:, -config.penalty_window :], config)
        logits = _keep_finite(penalized, fallback=logits)
    if config.temperature == 0.0:
        token = torch.argmax(logits, dim=-1)
        return token, torch.ones_like(token, dtype=logits.dtype)  # greedy: certain
    probs = torch.softmax(shape_logits(logits, config), dim=-1)  # (B, V)
    token = _multinomial(probs, generator)  # (B, 1)
    return token.squeeze(-1), probs.gather(-1, token).squeeze(-1)


def _multinomial(probs: torch.Tensor, generator: Generators) -> torch.Tensor:
    """One draw (B, 1) per row of probs (B, V): the row's cumulative distribution
    inverted at a uniform number from its generator (one number per row, however large
    the vocabulary; a segment's numbers are what drawing its rows alone gives)."""
    u = _uniforms(probs.size(0), generator, probs.device)  # (B,)
    cdf = probs.cumsum(dim=-1)  # (B, V)
    at = u.unsqueeze(-1) * cdf[:, -1:]  # (B, 1), in [0, total)
    # the first id whose cumulative probability passes `at`: never an id of probability
    # 0 (its sum equals the one before it, which passed first)
    token = torch.searchsorted(cdf, at, right=True)  # (B, 1)
    V = probs.size(-1)
    if bool((token == V).any()):  # u * total rounded up to total: the last drawable id
        last = V - 1 - (probs.flip(-1) > 0).to(torch.uint8).argmax(-1, keepdim=True)
        token = torch.minimum(token, last)
    return token


def _uniforms(n: int, generator: Generators, device: torch.device) -> torch.Tensor:
    """n numbers uniform in [0, 1), consecutive segments of them from their generators."""
    if generator is None or isinstance(generator, torch.Generator):
        return torch.rand(n, generator=generator, device=device)
    parts = [torch.rand(rows, generator=g, device=device) for g, rows in generator]
    return torch.cat(parts)


def shape_logits(logits: torch.Tensor, config: SampleConfig) -> torch.Tensor:
    """Steps 3 to 6 for a temperature > 0: the logits (B, V) the draw's softmax takes,
    -inf where top-k, top-p or min-p cut."""
    logits = apply_temperature(logits, config.temperature)
    if config.top_k is not None:
        logits = top_k_filter(logits, config.top_k)
    if config.top_p is not None:
        logits = top_p_filter(logits, config.top_p)
    if config.min_p is not None:
        logits = min_p_filter(logits, config.min_p)
    return logits


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


def finite_logits(logits: torch.Tensor, valid_vocab: int | None) -> torch.Tensor:
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
