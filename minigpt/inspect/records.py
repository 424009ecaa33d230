"""Each view as a JSON-native record: what `minigpt inspect ... --json` prints and what
the HTML pages embed, built in one place so the two always hold the same numbers."""

from __future__ import annotations

import math
from typing import Any

import torch

from minigpt.config import SampleConfig
from minigpt.inspect.attention import HeadStages, attention_lists
from minigpt.inspect.embeddings import Neighbour
from minigpt.inspect.forward import Traced
from minigpt.inspect.lens import LensRow
from minigpt.inspect.nextdist import NextView
from minigpt.inspect.positions import RopeView, Shift
from minigpt.inspect.surprise import Surprise
from minigpt.inspect.weights import WeightReport, WeightRow


def attention_record(traced: Traced) -> dict[str, Any]:
    """The labels and every head's weights: {"tokens", "attention": [l][h][q][k]}."""
    return {"tokens": list(traced.labels), "attention": attention_lists(traced)}


def stages_record(stages: HeadStages) -> dict[str, Any]:
    """One head's four stages; the masked stage's -inf as null."""

    def finite(rows: list[list[float]]) -> list[list[float | None]]:
        return [[v if math.isfinite(v) else None for v in row] for row in rows]

    return {
        "layer": stages.layer,
        "head": stages.head,
        "d_k": stages.d_k,
        "scores": stages.scores.tolist(),
        "scaled": stages.scaled.tolist(),
        "masked": finite(stages.masked.tolist()),
        "softmax": stages.softmax.tolist(),
    }


def weights_record(report: WeightReport) -> dict[str, Any]:
    """Total, tied, every category, every (layer, category)."""

    def row(r: WeightRow) -> dict[str, Any]:
        s = r.stats
        out = {"category": r.category, "count": s.count, "share": r.share}
        return out | {"rms": s.rms, "min": s.min, "max": s.max}

    return {
        "total": report.total,
        "tied": report.tied,
        "categories": [row(r) for r in report.categories],
        "layers": [{"layer": r.layer} | row(r) for r in report.layers],
    }


def rope_record(view: RopeView, note: str) -> dict[str, Any]:
    """RoPE's frequencies, wavelengths and score by distance."""
    return {
        "encoding": "rope",
        "frequencies": view.frequencies,
        "wavelengths": view.wavelengths,
        "distances": view.distances,
        "scores": view.scores,
        "note": note,
    }


def table_record(
    encoding: str,
    table: torch.Tensor,
    first: list[float],
    mean: list[float],
    shifts: list[Shift] | None,
) -> dict[str, Any]:
    """A learned or sinusoidal table, its similarity by distance, and the shifts."""
    record: dict[str, Any] = {
        "encoding": encoding,
        "table": table.tolist(),
        "similarity_to_first": first,
        "mean_similarity_by_distance": mean,
    }
    if shifts is not None:
        record["shifts"] = [shift_record(s) for s in shifts]
    return record


def shift_record(s: Shift) -> dict[str, Any]:
    """One prompt token before and after its position is added."""
    return {
        "token": s.label,
        "position": s.position,
        "nearest_id": s.nearest_id,
        "nearest": s.nearest_label,
        "cosine": s.cosine,
        "own_cosine": s.own_cosine,
        "changed": s.changed,
    }


def embeddings_record(
    vocab_size: int, n_embd: int, tied: bool, found: dict[str, tuple[str, list[Neighbour]]]
) -> dict[str, Any]:
    """The sizes, and each list asked for ("near", "analogy": what was asked, tokens)."""
    record: dict[str, Any] = {"vocab_size": vocab_size, "n_embd": n_embd, "tied": tied}
    for key, (asked, neighbours) in found.items():
        record[key] = {
            "asked": asked,
            "tokens": [{"id": n.id, "token": n.label, "cosine": n.cosine} for n in neighbours],
        }
    return record


def lens_record(traced: Traced, rows: list[LensRow]) -> dict[str, Any]:
    """Each stage's top tokens and probabilities at every position."""
    return {
        "tokens": traced.labels,
        "rows": [
            {"name": r.name, "ids": r.ids, "tokens": r.labels, "probs": r.probs} for r in rows
        ],
    }


def next_record(view: NextView, config: SampleConfig) -> dict[str, Any]:
    """The shown tokens' probabilities, and each temperature's entropy and counts."""
    return {
        "tokens": view.labels,
        "filters": {"top_k": config.top_k, "top_p": config.top_p, "min_p": config.min_p},
        "temperatures": [
            {
                "temperature": at.temperature,
                "entropy_bits": at.entropy_bits,
                "kept": at.kept,
                "kept_by": at.kept_by,
            }
            for at in view.temperatures
        ],
        "top": [
            {
                "id": i,
                "token": label,
                "model": float(view.model_probs[i]),
                "probs": [float(at.probs[i]) for at in view.temperatures],
            }
            for i, label in zip(view.top_ids, view.top_labels, strict=True)
        ],
    }


def surprise_record(scored: Surprise) -> dict[str, Any]:
    """Each token's loss in bits, and the text's bits per byte."""
    return {
        "tokens": scored.labels,
        "ids": scored.ids,
        "bits": scored.bits,
        "bits_per_byte": scored.bits_per_byte,
        "scored_bytes": scored.scored_bytes,
    }
