"""`inspect embeddings`: token vectors as points with directions.

Nearest tokens by cosine similarity; arithmetic such as "king - man + woman" (each
vector normalised first, as word2vec's analogies do, and the terms themselves left out
of the answers); and a 2-D map of the vocabulary by PCA (the two directions along
which the embeddings vary most).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from minigpt.errors import ConfigError
from minigpt.inspect.forward import token_label, token_labels
from minigpt.model import GPT
from minigpt.tokenizer.encodings import Tokenizer

_TERM = re.compile(r"\s+([+-])\s+")  # an operator between spaces separates terms
_QUOTES = ("'", '"')


@dataclass(frozen=True)
class Neighbour:
    """A vocabulary token and its cosine similarity to what was asked."""

    id: int
    label: str
    cosine: float


@dataclass(frozen=True)
class Projection:
    """The vocabulary's first tokens mapped onto the embeddings' two main directions."""

    ids: list[int]
    labels: list[str]
    points: list[tuple[float, float]]
    explained: tuple[float, float]  # the share of variance along each direction


def vocabulary(model: GPT, tokenizer: Tokenizer) -> torch.Tensor:
    """(V, C): the embedding rows of the tokenizer's ids (padding rows left out)."""
    return model.wte.weight.detach().float()[: tokenizer.vocab_size]


def single_token(tokenizer: Tokenizer, text: str) -> int:
    """The id of `text`, which must be exactly one token (quotes around it are dropped,
    so "' king'" names the token with a leading space)."""
    if len(text) >= 2 and text[0] == text[-1] and text[0] in _QUOTES:
        text = text[1:-1]
    ids = tokenizer.encode(text)
    if len(ids) == 1:
        return ids[0]
    pieces = "|".join(token_labels(tokenizer, ids)) if ids else "nothing"
    hint = "give one token (see `minigpt tokenize --text`)"
    if not text.startswith(" ") and len(tokenizer.encode(" " + text)) == 1:
        hint = f"\"' {text}'\" (with its leading space, in quotes) is one token"
    raise ConfigError(
        f"{text!r} is {len(ids)} tokens ({pieces}) for this model's tokenizer; {hint}"
    )


def ranked(
    model: GPT, tokenizer: Tokenizer, vector: torch.Tensor, k: int, exclude: set[int]
) -> list[Neighbour]:
    """The k vocabulary tokens most similar to `vector` (C,), skipping `exclude`."""
    similarity = F.normalize(vocabulary(model, tokenizer), dim=-1) @ F.normalize(vector, dim=0)
    if exclude:
        similarity[list(exclude)] = float("-inf")
    top = torch.topk(similarity, min(k, similarity.numel() - len(exclude)))
    ids = top.indices.tolist()
    return [
        Neighbour(i, token_label(tokenizer, i), float(c))
        for i, c in zip(ids, top.values.tolist(), strict=True)
    ]


def nearest(model: GPT, tokenizer: Tokenizer, token: str, k: int = 10) -> list[Neighbour]:
    """The k tokens whose embeddings point most nearly the way `token`'s does."""
    i = single_token(tokenizer, token)
    return ranked(model, tokenizer, vocabulary(model, tokenizer)[i], k, {i})


def parse_analogy(expression: str) -> list[tuple[int, str]]:
    """ "a - b + c" -> [(+1, "a"), (-1, "b"), (+1, "c")]; operators need spaces around."""
    parts = _TERM.split(" " + expression.strip() + " ")
    signs = [1 if op == "+" else -1 for op in parts[1::2]]
    terms = [(1, parts[0].strip())] + [
        (sign, term.strip()) for sign, term in zip(signs, parts[2::2], strict=True)
    ]
    if len(terms) < 2 or any(not term for _, term in terms):
        raise ConfigError(
            f"cannot read the analogy {expression!r}; write tokens joined by ' + ' and "
            "' - ', such as \"king - man + woman\""
        )
    return terms


def analogy(model: GPT, tokenizer: Tokenizer, expression: str, k: int = 10) -> list[Neighbour]:
    """The tokens nearest to the sum of the terms' unit vectors, the terms left out."""
    vectors = F.normalize(vocabulary(model, tokenizer), dim=-1)
    total = torch.zeros_like(vectors[0])  # on the model's device
    used = set()
    for sign, term in parse_analogy(expression):
        i = single_token(tokenizer, term)
        total += sign * vectors[i]
        used.add(i)
    return ranked(model, tokenizer, total, k, used)


def projection(model: GPT, tokenizer: Tokenizer, count: int = 200) -> Projection:
    """The first `count` ids' embeddings on the two principal directions of the whole
    vocabulary's embeddings."""
    vectors = vocabulary(model, tokenizer)
    centred = vectors - vectors.mean(dim=0)
    _, s, vh = torch.linalg.svd(centred, full_matrices=False)
    variance = s.square()
    share = variance / variance.sum()
    ids = list(range(min(count, vectors.size(0))))
    points = (centred[ids] @ vh[:2].T).tolist()
    labels = [token_label(tokenizer, i) for i in ids]
    return Projection(ids, labels, [(x, y) for x, y in points], (float(share[0]), float(share[1])))
