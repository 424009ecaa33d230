"""The weights a run starts from instead of random ones: `minigpt train FILE --init-from
SOURCE`, where SOURCE is a minigpt run or snapshot, or anything `minigpt import` takes (a
Hugging Face model directory or hub name, converted in memory).

The run keeps the source's shape and tokenizer: its text is tokenized with the source's
own tokenizer (`--tokenizer init-from` in the dataset's settings). Two shape settings may
change. The context (`block_size`) may be shorter, where a learned position table keeps
its first rows, or longer where positions are computed (sinusoidal, RoPE) but not where
they are learned (positions past the table were never trained). Dropout may change: it
has no weights.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from minigpt.checkpoint import CONFIG, read_snapshot, resolve_snapshot
from minigpt.checkpoint.layout import MAX_CONFIG_BYTES
from minigpt.config import GPTConfig
from minigpt.convert.hf_import import read_hf_weights
from minigpt.errors import CheckpointError, ConfigError
from minigpt.fileio import read_json_object
from minigpt.schema import flag_of
from minigpt.tokenizer.encodings import Tokenizer

CHANGEABLE = ("block_size", "dropout")  # the shape settings a fine-tuning run may set


@dataclass(frozen=True)
class Start:
    """A model to start from: its shape, tokenizer and weights (float32, a tied
    unembedding stored once as wte.weight), and what it is."""

    source: str  # as the user gave it
    origin: str  # "minigpt", or the imported architecture ("gpt2", "llama")
    step: int  # the source run's step (0 for an imported model)
    config: GPTConfig
    tokenizer: Tokenizer
    weights: dict[str, torch.Tensor]

    def record(self) -> dict[str, Any]:
        """What the run's snapshots say it started from."""
        return {"source": self.source, "origin": self.origin, "step": self.step}


def load_start(source: str) -> Start:
    """Read SOURCE: a minigpt run or snapshot directory, else a Hugging Face model."""
    path = Path(source).expanduser()
    if path.is_dir() and _is_minigpt(path):
        snapshot = read_snapshot(path)
        step = snapshot.meta.get("step")
        step = step if isinstance(step, int) else 0
        return Start(source, "minigpt", step, snapshot.config, snapshot.tokenizer, snapshot.weights)
    model, weights = read_hf_weights(source)
    return Start(source, model.architecture, 0, model.config, model.tokenizer, weights)


def _is_minigpt(path: Path) -> bool:
    """Whether a directory is a minigpt run or snapshot (its config.json has minigpt's
    format_version; a Hugging Face config.json has a model_type instead)."""
    try:
        meta = read_json_object(resolve_snapshot(path) / CONFIG, MAX_CONFIG_BYTES)
    except (CheckpointError, OSError, ValueError):
        return False
    return "format_version" in meta and "model_type" not in meta


def start_label(start: Start) -> str:
    """A short name of the source for a run's name: its last path part (a run's, not
    its snapshot's)."""
    parts = [p for p in Path(start.source.rstrip("/")).parts if p not in ("latest", "best")]
    return parts[-1] if parts else start.origin


def start_config(start: Start, given: dict[str, Any]) -> GPTConfig:
    """The shape the run trains: the source's, with the given context and dropout."""
    fixed = sorted(name for name in given if name not in CHANGEABLE)
    if fixed:
        flags = ", ".join(flag_of(GPTConfig, name) for name in fixed)
        raise ConfigError(
            f"--init-from takes the model's shape from {start.source}; drop {flags} "
            "(--block-size and --dropout may change)"
        )
    config = replace(start.config, **given)
    source_block = start.config.block_size
    if config.block_size > source_block and config.pos_encoding == "learned":
        raise ConfigError(
            f"--block-size {config.block_size} is longer than the {source_block} positions "
            f"{start.source} learned; use --block-size {source_block} or less"
        )
    return config


def fitted_weights(start: Start, config: GPTConfig) -> dict[str, torch.Tensor]:
    """The source's weights for the shape trained: a shorter learned position table is
    the first `block_size` rows of the source's."""
    weights = dict(start.weights)
    if config.pos_encoding == "learned":
        weights["wpe.weight"] = weights["wpe.weight"][: config.block_size]
    return weights
