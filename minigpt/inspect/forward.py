"""One traced forward pass over a prompt: the ids, how each token reads, the logits and
the `Trace` (attention of every head, the residual stream after every layer)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from minigpt.errors import ConfigError
from minigpt.model import GPT
from minigpt.tokenizer.encodings import Tokenizer
from minigpt.tokenizer.pieces import readable, token_pieces
from minigpt.trace import Trace


@dataclass(frozen=True)
class Traced:
    """A prompt through the model. Tensors have the batch dimension removed:
    trace.attention[l] is (nh, T, T), trace.residual[l] is (T, C), logits (T, V)."""

    ids: list[int]
    labels: list[str]  # each token as it reads (`minigpt.tokenizer.pieces`)
    logits: torch.Tensor  # (T, V) float32
    trace: Trace


def token_labels(tokenizer: Tokenizer, ids: list[int]) -> list[str]:
    """Each id as it reads in context: whole characters, split bytes as <EC>, controls
    as escapes."""
    return [readable(piece.text) for piece in token_pieces(tokenizer, ids)]


def token_label(tokenizer: Tokenizer, id: int) -> str:
    """One id as it reads alone (neighbours could otherwise join into one character)."""
    return token_labels(tokenizer, [id])[0]


def prompt_tokens(tokenizer: Tokenizer, text: str, block_size: int) -> list[int]:
    """The prompt's ids; refused when empty or longer than the model's context."""
    ids = tokenizer.encode(text)
    if not ids:
        raise ConfigError("the prompt is empty; give some text with --prompt TEXT")
    if len(ids) > block_size:
        raise ConfigError(
            f"the prompt is {len(ids)} tokens, more than the model's context of {block_size}; "
            "give a shorter one"
        )
    return ids


def trace_prompt(model: GPT, tokenizer: Tokenizer, text: str) -> Traced:
    """Run `text` through `model` (in eval mode) and record everything inside."""
    return trace_ids(model, tokenizer, prompt_tokens(tokenizer, text, model.config.block_size))


@torch.no_grad()
def trace_ids(model: GPT, tokenizer: Tokenizer, ids: list[int]) -> Traced:
    """Run the ids (1 to block_size of them) through `model` and record everything."""
    trace = Trace()
    was_training = model.training
    model.eval()
    try:
        idx = torch.tensor([ids], device=model.device)
        logits = model(idx, trace=trace)[0].float()  # (T, V)
    finally:
        model.train(was_training)
    unbatched = Trace(
        scores=[s[0].float() for s in trace.scores],
        attention=[a[0].float() for a in trace.attention],
        residual=[r[0] for r in trace.residual],
    )
    return Traced(ids, token_labels(tokenizer, ids), logits, unbatched)
