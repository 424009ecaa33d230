"""The one generation path: prompt ids -> steps (the ids drawn, their log-probabilities).

- `prompt_ids`: the ids a prompt starts from;
- `generate`: prefill a prompt into a fresh `ModelContext`, then `continue_from` it;
- `continue_from`: draw from the logits, feed the draw back, repeat: one `Step` per
  position for B sequences.

Every caller goes through here: `minigpt sample`, the chat session, the sample shown
while training. Nothing here prints: the caller turns the steps into text and shows it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

from minigpt.config import SampleConfig
from minigpt.errors import TokenizerError
from minigpt.generation.context import ModelContext
from minigpt.generation.sampling import draw, finite_logits
from minigpt.model import GPT
from minigpt.tokenizer.encodings import Tokenizer


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
    return continue_from(context, logits, config, generator, valid_vocab, top=top)


@torch.inference_mode()
def continue_from(
    context: ModelContext,
    logits: torch.Tensor,
    config: SampleConfig,
    generator: torch.Generator | None = None,
    valid_vocab: int | None = None,
    *,
    top: int = 0,
) -> Iterator[Step]:
    """Steps that continue `context`, whose next-token logits (B, V) are `logits`:
    draw, feed the draw back, repeat, up to config.max_new_tokens steps.

    The last token drawn is not fed (nothing would read its logits); a caller that
    goes on from this context feeds it first (`ModelContext.sync` does)."""
    for i in range(config.max_new_tokens):
        finite = finite_logits(logits, valid_vocab)  # (B, V), for the draw and the record
        recent = context.tokens if config.penalized else None
        token = draw(finite, config, generator, recent)  # (B,)
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
