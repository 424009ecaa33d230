"""`inspect surprise`: how surprised the model is by each token of a text.

Each token's loss is -log2 p(token | the tokens before it), in bits; the text's bits
per byte is their sum over the UTF-8 bytes of the tokens scored (the first token has
no context and is not scored). A text longer than the model's context is read in
windows that overlap by half, so every scored token after the first window has at
least half a context of tokens before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from minigpt.errors import ConfigError
from minigpt.inspect.forward import token_labels
from minigpt.model import GPT
from minigpt.tokenizer.encodings import Tokenizer

MAX_TOKENS = 100_000  # a longer text is refused: its view would not be read anyway


@dataclass(frozen=True)
class Surprise:
    """Each token with its loss in bits (None for the first), and the whole text's
    bits per byte over the scored tokens."""

    ids: list[int]
    labels: list[str]
    bits: list[float | None]
    bits_per_byte: float
    scored_bytes: int


@torch.no_grad()
def surprise(model: GPT, tokenizer: Tokenizer, text: str) -> Surprise:
    """The model's loss on every token of `text`."""
    ids = tokenizer.encode(text)
    if len(ids) < 2:
        raise ConfigError("the text needs at least two tokens to score; give a longer one")
    if len(ids) > MAX_TOKENS:
        raise ConfigError(f"the text is {len(ids)} tokens; give at most {MAX_TOKENS}")
    bits: list[float | None] = [None] * len(ids)
    block = model.config.block_size
    stride = max(1, block // 2)
    was_training = model.training
    model.eval()
    try:
        start, scored_to = 0, 1  # tokens before scored_to have their loss
        while scored_to < len(ids):
            window = ids[start : start + block]
            logits = model(torch.tensor([window], device=model.device))[0].float()  # (W, V)
            logp = torch.log_softmax(logits[:, : tokenizer.vocab_size], dim=-1)
            for t in range(max(scored_to, start + 1), start + len(window)):
                bits[t] = -float(logp[t - start - 1, ids[t]]) / math.log(2)
            scored_to = start + len(window)
            start += stride
    finally:
        model.train(was_training)
    lengths = tokenizer.token_byte_lengths()
    scored_bytes = sum(lengths[i] for i in ids[1:])
    total = sum(b for b in bits if b is not None)
    return Surprise(
        ids, token_labels(tokenizer, ids), bits, total / max(scored_bytes, 1), scored_bytes
    )
