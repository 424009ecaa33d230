"""`inspect lens`: the logit lens. The final norm and the unembedding applied to the
residual stream after the embedding and after every block show what the model would
predict if it stopped there; the last row is the model's real prediction."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from minigpt.inspect.forward import Traced, token_label
from minigpt.model import GPT
from minigpt.tokenizer.encodings import Tokenizer


@dataclass(frozen=True)
class LensRow:
    """One stage's prediction at every position: the top tokens and their probability."""

    name: str  # "embedding", then "layer 1" .. "layer n"
    ids: list[list[int]]  # (T, k), likeliest first
    labels: list[list[str]]
    probs: list[list[float]]


@torch.no_grad()
def lens_logits(model: GPT, traced: Traced) -> torch.Tensor:
    """(n_layer + 1, T, V): ln_f then the unembedding of every recorded residual."""
    stream = torch.stack(traced.trace.residual)  # (L + 1, T, C)
    return model.lm_head(model.ln_f(stream)).float()


def logit_lens(model: GPT, tokenizer: Tokenizer, traced: Traced, k: int = 1) -> list[LensRow]:
    """Each stage's k likeliest next tokens at every position (padding ids never)."""
    logits = lens_logits(model, traced)[..., : tokenizer.vocab_size]
    top = torch.topk(torch.softmax(logits, dim=-1), k=min(k, logits.size(-1)), dim=-1)
    rows = []
    for stage in range(logits.size(0)):
        ids = top.indices[stage].tolist()  # (T, k)
        rows.append(
            LensRow(
                name="embedding" if stage == 0 else f"layer {stage}",
                ids=ids,
                labels=[[token_label(tokenizer, i) for i in row] for row in ids],
                probs=top.values[stage].tolist(),
            )
        )
    return rows
