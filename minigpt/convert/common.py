"""The machinery shared by every Hugging Face layout in `minigpt.convert`.

This module owns what does not depend on the architecture: reading a config dictionary
with transformers' defaults, checking that a `GPTConfig` has an architecture's shape,
the `Rule` that says where one minigpt tensor lives on the Hugging Face side, and
applying a list of rules in either direction (prefix stripping, shape checks, stacking
and transposing, tied embeddings).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from minigpt.config import GPTConfig
from minigpt.errors import CheckpointError, ConfigError
from minigpt.model import GPT
from minigpt.schema import is_int

# ---------------------------------------------------------------------------------
# Settings.


def getter(
    hf: Mapping[str, Any], defaults: Mapping[str, Any], model_type: str, arch: str
) -> Callable[[str], Any]:
    """`get(key)`: the config's value, or transformers' default when the key is absent."""
    if not isinstance(hf, Mapping):
        raise ConfigError(f"{arch} config must be a JSON object, got {type(hf).__name__}")
    found = hf.get("model_type", model_type)
    if found != model_type:
        raise ConfigError(f"config has model_type={found!r}, expected {model_type!r} ({arch})")

    def get(key: str) -> Any:
        return hf.get(key, defaults[key])

    return get


# How the config.json of each architecture names minigpt's settings: (GPT-2, Llama).
GPT2_COLUMN, LLAMA_COLUMN = 0, 1
CONFIG_NAMES: dict[str, tuple[str, str]] = {
    "vocab_size": ("vocab_size", "vocab_size"),
    "block_size": ("n_positions", "max_position_embeddings"),
    "n_layer": ("n_layer", "num_hidden_layers"),
    "n_head": ("n_head", "num_attention_heads"),
    "n_embd": ("n_embd", "hidden_size"),
    "n_inner": ("n_inner", "intermediate_size"),
    "dropout": ("resid_pdrop", "attention_dropout"),  # minigpt has one dropout rate
    "tie_embeddings": ("tie_word_embeddings", "tie_word_embeddings"),
    "norm_eps": ("layer_norm_epsilon", "rms_norm_eps"),
}
FLOAT_SETTINGS = ("dropout", "norm_eps")


def gpt_config(
    arch: str, get: Callable[[str], Any], column: int, block: Mapping[str, Any], **more: Any
) -> GPTConfig:
    """The GPTConfig of an architecture's config: its CONFIG_NAMES column read with
    `get`, the architecture's block kind (`block`), and `more`."""
    fields = {mg: get(names[column]) for mg, names in CONFIG_NAMES.items()}
    for name in FLOAT_SETTINGS:
        fields[name] = as_float(fields[name])
    try:
        return GPTConfig(**fields, **block, **more)
    except ConfigError as e:
        raise ConfigError(f"{arch} config does not make a valid minigpt model: {e}") from e


def as_float(value: Any) -> Any:
    """JSON ints as floats (`"rms_norm_eps": 0` style); anything else is left for validation."""
    if is_int(value):
        return float(value)
    return value


def require_shape(cfg: GPTConfig, arch: str, **want: Any) -> None:
    for name, value in want.items():
        if getattr(cfg, name) != value:
            raise ConfigError(
                f"{arch} needs {name}={value!r}, but this model has {name}={getattr(cfg, name)!r}"
            )


# ---------------------------------------------------------------------------------
# Tensors.


@dataclass(frozen=True)
class Rule:
    """How one minigpt tensor is stored on the Hugging Face side."""

    mg: str  # minigpt state-dict key
    # HF key(s) without the "transformer." / "model." prefix. Several keys are stacked
    # along rows, in this order, into the one minigpt matrix.
    hf: tuple[str, ...]
    # GPT-2's Conv1D keeps weights as (in, out); nn.Linear as (out, in).
    transpose: bool = False
    # The rows of each stacked key, in order; None = equal shares of the minigpt matrix.
    # (Grouped-query attention stacks a query matrix over smaller key and value ones.)
    rows: tuple[int, ...] | None = None

    def piece_rows(self, mg_rows: int) -> tuple[int, ...]:
        """The rows of each HF key of a minigpt matrix with `mg_rows` rows."""
        if self.rows is not None:
            return self.rows
        n = len(self.hf)
        return (mg_rows // n,) * n


def minigpt_shapes(cfg: GPTConfig) -> dict[str, torch.Size]:
    """Every key of `GPT(cfg).state_dict()` and its shape, without allocating weights."""
    with torch.device("meta"):
        model = GPT(cfg)
    return {k: v.shape for k, v in model.state_dict().items()}


def strip_prefix(
    sd: Mapping[str, Tensor], prefix: str, buffers: str, arch: str
) -> dict[str, Tensor]:
    """HF tensors keyed without `prefix`; recomputed buffers are dropped."""
    if not isinstance(sd, Mapping):
        raise CheckpointError(f"{arch} weights must be a mapping of names to tensors")
    out: dict[str, Tensor] = {}
    for key, value in sd.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{arch} weights have a non-string key {key!r}")
        name = key.removeprefix(prefix)
        if re.fullmatch(buffers, name):
            continue
        if not isinstance(value, Tensor):
            raise CheckpointError(f"{arch} entry {key!r} is a {type(value).__name__}, not a tensor")
        if name in out:
            raise CheckpointError(
                f"{arch} tensor {name!r} appears both with and without {prefix!r}"
            )
        out[name] = value
    return out


def from_hf(
    hf: dict[str, Tensor], cfg: GPTConfig, rules: Sequence[Rule], arch: str
) -> dict[str, Tensor]:
    shapes = minigpt_shapes(cfg)
    out: dict[str, Tensor] = {}
    for rule in rules:
        wanted = _hf_shapes(shapes[rule.mg], rule)
        parts = [_take(hf, name, shape, arch) for name, shape in zip(rule.hf, wanted, strict=True)]
        if rule.transpose:
            out[rule.mg] = parts[0].t().contiguous()
        elif len(parts) > 1:
            out[rule.mg] = torch.cat(parts, dim=0)
        else:
            out[rule.mg] = parts[0]
    if cfg.tie_embeddings:
        head = hf.pop("lm_head.weight", None)
        if head is not None and not _same(head, out["wte.weight"]):
            raise CheckpointError(
                f"{arch} lm_head.weight differs from the token embedding, but the config "
                "ties them (tie_word_embeddings=True)"
            )
        out["lm_head.weight"] = out["wte.weight"]  # one matrix embeds and unembeds
    if hf:
        raise CheckpointError(f"{arch} weights have tensors minigpt does not use: {_few(hf)}")
    return {k: out[k] for k in shapes}  # GPT.state_dict() order


def to_hf(
    sd: Mapping[str, Tensor], cfg: GPTConfig, rules: Sequence[Rule], prefix: str, arch: str
) -> dict[str, Tensor]:
    if not isinstance(sd, Mapping):
        raise CheckpointError("minigpt weights must be a mapping of names to tensors")
    mg = dict(sd)
    shapes = minigpt_shapes(cfg)
    if cfg.tie_embeddings:
        head = mg.pop("lm_head.weight", None)
        wte = mg.get("wte.weight")
        if head is not None and isinstance(wte, Tensor) and not _same(head, wte):
            raise CheckpointError(
                "minigpt lm_head.weight differs from wte.weight, but the config ties them"
            )
        shapes.pop("lm_head.weight")
    extra = set(mg) - set(shapes)
    if extra:
        raise CheckpointError(f"minigpt weights have unexpected tensors: {_few(extra)}")
    out: dict[str, Tensor] = {}
    for rule in rules:
        t = _take(mg, rule.mg, shapes[rule.mg], "minigpt")
        if rule.transpose:
            pieces = [t.t().contiguous()]
        elif len(rule.hf) > 1:
            # Clones, so no two exported tensors share storage (safetensors refuses that).
            pieces = [p.clone() for p in t.split(rule.piece_rows(t.size(0)), dim=0)]
        else:
            pieces = [t]
        for name, piece in zip(rule.hf, pieces, strict=True):
            out[name if name == "lm_head.weight" else prefix + name] = piece
    if cfg.tie_embeddings:
        # HF's state_dict lists the tied head too (the same tensor), so strict loading works.
        (embedding,) = (r.hf[0] for r in rules if r.mg == "wte.weight")
        out["lm_head.weight"] = out[prefix + embedding]
    return out


def _hf_shapes(mg_shape: torch.Size, rule: Rule) -> list[tuple[int, ...]]:
    """The shape each HF piece of `rule` must have, in the order of `rule.hf`."""
    if rule.transpose:
        return [tuple(reversed(mg_shape))]
    return [(rows, *mg_shape[1:]) for rows in rule.piece_rows(mg_shape[0])]


def _take(tensors: dict[str, Tensor], name: str, shape: Sequence[int], arch: str) -> Tensor:
    """Remove and return tensor `name`, checking it exists and has `shape`."""
    if name not in tensors:
        raise CheckpointError(f"{arch} weights are missing tensor {name!r}")
    t = tensors.pop(name)
    if not isinstance(t, Tensor):
        raise CheckpointError(f"{arch} entry {name!r} is a {type(t).__name__}, not a tensor")
    if tuple(t.shape) != tuple(shape):
        raise CheckpointError(
            f"{arch} tensor {name!r} has shape {tuple(t.shape)}, expected {tuple(shape)}"
        )
    return t


def _same(a: Tensor, b: Tensor) -> bool:
    """Whether two tensors are one tied weight: shared storage, or equal values."""
    if a.shape != b.shape:
        return False
    return a.data_ptr() == b.data_ptr() or torch.equal(a, b)


def _few(names: Any, limit: int = 5) -> str:
    names = sorted(names, key=str)
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


@dataclass(frozen=True)
class Layout:
    """How one transformers architecture stores minigpt's tensors."""

    arch: str  # its name in messages, e.g. "GPT-2"
    prefix: str  # the base model's attribute in the LM class, e.g. "transformer."
    buffers: str  # regex of non-weight tensors it may save (recomputed, never loaded)
    rules: Callable[[GPTConfig], list[Rule]]
    check: Callable[[GPTConfig], None]  # refuses a shape the architecture cannot hold

    def state_dict_from(self, sd: Mapping[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
        """A `GPT(cfg)` state dict from the architecture's (LM class or base model)."""
        self.check(cfg)
        hf = strip_prefix(sd, self.prefix, self.buffers, self.arch)
        return from_hf(hf, cfg, self.rules(cfg), self.arch)

    def state_dict_to(self, sd: Mapping[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
        """The architecture's LM-class state dict from a `GPT(cfg)` one."""
        self.check(cfg)
        return to_hf(sd, cfg, self.rules(cfg), self.prefix, self.arch)


def unembedding_rules(cfg: GPTConfig) -> list[Rule]:
    """`lm_head.weight` has a tensor of its own only when untied."""
    return [] if cfg.tie_embeddings else [Rule("lm_head.weight", ("lm_head.weight",))]
