"""`inspect positions`: how the model knows where a token is.

Attention alone has no notion of order. A learned or sinusoidal model adds a position
vector to each token's embedding; a RoPE model adds nothing and instead rotates each
query and key by an angle proportional to its position, so a query-key score depends on
the distance between them. Here:

- the table of position vectors (positions x channels) and the cosine similarity of
  every pair of positions (for sinusoids it has a closed form: sum_i cos((p - q) w_i)
  over the C/2 frequencies, divided by C/2);
- for RoPE, each channel pair's frequency and wavelength, and the score of a query and
  key of all ones rotated by the model's own tables, against their distance;
- the learner's question: does adding the position vector make a token look like
  another token? For each prompt token, the vocabulary embedding nearest (by cosine) to
  embedding + position, as the model's first layer receives it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minigpt.inspect.forward import prompt_tokens, token_label, token_labels
from minigpt.model import GPT
from minigpt.positional import apply_rope
from minigpt.tokenizer.encodings import Tokenizer


@dataclass(frozen=True)
class Shift:
    """One prompt token before and after its position is added."""

    label: str
    position: int
    nearest_id: int
    nearest_label: str
    cosine: float  # of embedding + position with the nearest embedding
    own_cosine: float  # ... with the token's own embedding

    @property
    def changed(self) -> bool:
        """Whether the position made the token look most like another token."""
        return self.nearest_label != self.label


@dataclass(frozen=True)
class RopeView:
    """RoPE's rotation: one frequency per channel pair, and the decay of a score."""

    frequencies: list[float]  # radians per position, one per pair (head_size / 2)
    wavelengths: list[float]  # positions per full turn: 2 pi / frequency
    distances: list[int]  # 0 .. block_size - 1
    scores: list[float]  # rotated ones . rotated ones / head_size, per distance


def position_table(model: GPT) -> torch.Tensor | None:
    """(block_size, C): what is added at each position; None for RoPE (nothing added)."""
    if model.wpe is not None:
        return model.wpe.weight.detach().float()
    if model.config.pos_encoding == "sinusoidal":
        return model.sinusoidal.float()
    return None


def cosine_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """(N, N) cosine similarity of every pair of rows of (N, C)."""
    unit = F.normalize(vectors.float(), dim=-1)
    return unit @ unit.T


def sinusoidal_similarity(n_pos: int, dim: int) -> torch.Tensor:
    """The closed form of the sinusoidal table's cosine similarity (n_pos, n_pos): each
    position's vector has norm sqrt(dim/2), and PE(p).PE(q) = sum_i cos((p - q) w_i)."""
    inv_freq = torch.exp(-math.log(10000.0) * torch.arange(0, dim, 2).double() / dim)
    pos = torch.arange(n_pos, dtype=torch.float64)
    delta = pos[:, None] - pos[None, :]  # (n_pos, n_pos)
    return (torch.cos(delta[..., None] * inv_freq).sum(-1) / (dim / 2)).float()


@torch.no_grad()
def rope_view(model: GPT) -> RopeView | None:
    """RoPE's frequencies and score-by-distance, from the model's own tables; None when
    the model does not use RoPE."""
    if model.config.pos_encoding != "rope":
        return None
    cos, sin = model.rope_cos.float(), model.rope_sin.float()  # (block, hs/2)
    hs = model.config.head_size
    frequencies = torch.atan2(sin[1], cos[1])  # the angle at position 1, per pair
    ones = torch.ones(1, 1, cos.size(0), hs, device=cos.device)  # ones at each position
    rotated = apply_rope(ones, cos, sin)[0, 0]  # (block, hs)
    scores = rotated @ rotated[0] / hs  # query at distance d from a key at position 0
    return RopeView(
        frequencies=frequencies.tolist(),
        wavelengths=(2 * math.pi / frequencies).tolist(),
        distances=list(range(cos.size(0))),
        scores=scores.tolist(),
    )


@torch.no_grad()
def position_shifts(model: GPT, tokenizer: Tokenizer, text: str) -> list[Shift] | None:
    """For each token of `text`, the vocabulary embedding nearest to its embedding plus
    its position, as the first layer receives it (a sinusoidal model scales embeddings
    by sqrt(C) first). None for RoPE, which adds nothing to the embedding."""
    table = position_table(model)
    if table is None:
        return None
    ids = prompt_tokens(tokenizer, text, model.config.block_size)
    vocab = model.wte.weight.detach().float()[: tokenizer.vocab_size]  # (V, C)
    if model.config.pos_encoding == "sinusoidal":
        vocab = vocab * math.sqrt(model.config.n_embd)
    inputs = vocab[ids] + table[: len(ids)]  # (T, C)
    similarity = F.normalize(inputs, dim=-1) @ F.normalize(vocab, dim=-1).T  # (T, V)
    best = similarity.argmax(dim=-1)
    labels = token_labels(tokenizer, ids)
    return [
        Shift(
            label=labels[t],
            position=t,
            nearest_id=int(best[t]),
            nearest_label=token_label(tokenizer, int(best[t])),
            cosine=float(similarity[t, best[t]]),
            own_cosine=float(similarity[t, ids[t]]),
        )
        for t in range(len(ids))
    ]


def similarity_by_distance(similarity: torch.Tensor) -> tuple[list[float], list[float]]:
    """From an (N, N) similarity matrix, for each distance d = 0 .. N - 1: the similarity
    of position 0 with position d, and the mean over every pair of positions d apart."""
    n = similarity.size(0)
    first = similarity[0].float().tolist()
    mean = [float(similarity.diagonal(d).float().mean()) for d in range(n)]
    return first, mean
