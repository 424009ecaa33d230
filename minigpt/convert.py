"""Weights and settings to and from Hugging Face transformers layouts: GPT-2 and Llama.

This module owns the mapping between minigpt's names and shapes and those of
`GPT2LMHeadModel` and `LlamaForCausalLM`. It works on plain data only: config
dictionaries (the contents of a `config.json`, or `PretrainedConfig.to_dict()`) and
state dicts of tensors. It never imports transformers; callers that have it build
`transformers.GPT2Config(**config_to_gpt2(cfg))` and the like themselves.

The two architectures are minigpt configurations:

- GPT-2 = learned positions, LayerNorm, tanh-GELU MLP, biases everywhere. GPT-2 stores
  its linear layers as `Conv1D`, whose weight is (in, out); `nn.Linear` is (out, in),
  so every matrix except the embeddings is transposed.
- Llama = RoPE, RMSNorm, SwiGLU MLP, no biases. Its separate q/k/v projections are
  stacked row-wise into `c_attn` ([q; k; v]) and gate/up into `mlp.c_fc` ([gate; up]).
  minigpt's RoPE rotates the same half-split channel pairs (i, i + hs/2) as Llama's
  `rotate_half`, so queries and keys need no permutation.

Anything the other side cannot represent raises `ConfigError` (a setting) or
`CheckpointError` (a tensor) naming it; nothing is silently dropped or approximated.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import torch
from torch import Tensor

from minigpt.config import GPTConfig
from minigpt.errors import CheckpointError, ConfigError
from minigpt.model import GPT

# transformers' own defaults, used for keys a config.json leaves out: `save_pretrained`
# writes only the values that differ from these, so a missing key means "the default".
GPT2_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "vocab_size": 50257,
        "n_positions": 1024,
        "n_embd": 768,
        "n_layer": 12,
        "n_head": 12,
        "n_inner": None,
        "activation_function": "gelu_new",
        "resid_pdrop": 0.1,
        "layer_norm_epsilon": 1e-5,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": True,
    }
)
LLAMA_DEFAULTS: Mapping[str, Any] = MappingProxyType(
    {
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 11008,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": None,  # None = num_attention_heads
        "head_dim": None,  # None = hidden_size // num_attention_heads
        "hidden_act": "silu",
        "max_position_embeddings": 2048,
        "rms_norm_eps": 1e-6,
        "tie_word_embeddings": False,
        "rope_theta": 10000.0,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
    }
)

# Activation names transformers maps to exactly minigpt's non-linearities.
GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh")  # tanh GELU
LLAMA_ACTIVATIONS = ("silu", "swish")  # SiLU, SwiGLU's gate

# Buffers transformers may have saved next to the weights: the causal mask of GPT-2
# attention and Llama's rotary frequencies. They are recomputed, never loaded.
GPT2_BUFFERS = r"h\.\d+\.attn\.(bias|masked_bias)"
LLAMA_BUFFERS = r"(layers\.\d+\.self_attn\.)?rotary_emb\.(inv_freq|original_inv_freq)"


# ---------------------------------------------------------------------------------
# Settings.


def config_from_gpt2(hf: Mapping[str, Any]) -> GPTConfig:
    """The minigpt shape of a GPT-2 `config.json` (or `GPT2Config.to_dict()`).

    minigpt has one dropout rate; it takes GPT-2's `resid_pdrop`.
    """
    get = _getter(hf, GPT2_DEFAULTS, "gpt2", "GPT-2")
    if get("activation_function") not in GPT2_ACTIVATIONS:
        raise ConfigError(
            f"GPT-2 config sets activation_function={get('activation_function')!r}; "
            f"minigpt's GELU MLP matches only {', '.join(GPT2_ACTIVATIONS)}"
        )
    if not get("scale_attn_weights"):
        raise ConfigError("GPT-2 config sets scale_attn_weights=False, which minigpt lacks")
    for flag in ("scale_attn_by_inverse_layer_idx", "reorder_and_upcast_attn"):
        if get(flag):
            raise ConfigError(f"GPT-2 config sets {flag}=True, which minigpt does not support")
    if get("add_cross_attention"):
        raise ConfigError(
            "GPT-2 config sets add_cross_attention=True; minigpt is decoder-only "
            "and has no cross-attention"
        )
    return _gpt_config(
        "GPT-2",
        vocab_size=get("vocab_size"),
        block_size=get("n_positions"),
        n_layer=get("n_layer"),
        n_head=get("n_head"),
        n_embd=get("n_embd"),
        n_inner=get("n_inner"),
        pos_encoding="learned",
        norm="layernorm",
        mlp="gelu",
        bias=True,
        dropout=_as_float(get("resid_pdrop")),
        tie_embeddings=get("tie_word_embeddings"),
        norm_eps=_as_float(get("layer_norm_epsilon")),
    )


def config_to_gpt2(
    cfg: GPTConfig, *, bos_token_id: int | None = None, eos_token_id: int | None = None
) -> dict[str, Any]:
    """Keyword arguments for `transformers.GPT2Config` describing `cfg`.

    The token ids belong to the tokenizer, not the model: pass them when known. They
    default to None rather than GPT-2's 50256, which is outside most minigpt vocabularies.
    """
    _require_gpt2_shape(cfg)
    return {
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.block_size,
        "n_embd": cfg.n_embd,
        "n_layer": cfg.n_layer,
        "n_head": cfg.n_head,
        "n_inner": cfg.n_inner,
        "activation_function": "gelu_new",  # tanh GELU, as minigpt's MLP
        "resid_pdrop": cfg.dropout,
        "embd_pdrop": cfg.dropout,
        "attn_pdrop": cfg.dropout,
        "layer_norm_epsilon": cfg.norm_eps,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "add_cross_attention": False,
        "tie_word_embeddings": cfg.tie_embeddings,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
    }


def config_from_llama(hf: Mapping[str, Any]) -> GPTConfig:
    """The minigpt shape of a Llama `config.json` (or `LlamaConfig.to_dict()`).

    Reads the RoPE base from transformers 5's `rope_parameters`, or from the older
    top-level `rope_theta` with `rope_scaling`. minigpt's dropout takes `attention_dropout`.
    """
    get = _getter(hf, LLAMA_DEFAULTS, "llama", "Llama")
    if get("hidden_act") not in LLAMA_ACTIVATIONS:
        raise ConfigError(
            f"Llama config sets hidden_act={get('hidden_act')!r}; "
            "minigpt's SwiGLU MLP gates with silu only"
        )
    n_head, n_embd = get("num_attention_heads"), get("hidden_size")
    n_kv = get("num_key_value_heads")
    if n_kv is not None and n_kv != n_head:
        raise ConfigError(
            f"Llama config sets num_key_value_heads={n_kv!r} with num_attention_heads="
            f"{n_head!r}; minigpt has no grouped-query attention, so they must be equal"
        )
    head_dim = get("head_dim")
    if head_dim is not None and not (
        _is_int(head_dim) and _is_int(n_head) and n_head > 0 and head_dim * n_head == n_embd
    ):
        raise ConfigError(
            f"Llama config sets head_dim={head_dim!r}; minigpt needs "
            f"hidden_size / num_attention_heads ({n_embd!r} / {n_head!r})"
        )
    for flag in ("attention_bias", "mlp_bias"):
        if get(flag):
            raise ConfigError(f"Llama config sets {flag}=True; minigpt's Llama shape has no biases")
    return _gpt_config(
        "Llama",
        vocab_size=get("vocab_size"),
        block_size=get("max_position_embeddings"),
        n_layer=get("num_hidden_layers"),
        n_head=n_head,
        n_embd=n_embd,
        n_inner=get("intermediate_size"),
        pos_encoding="rope",
        norm="rmsnorm",
        mlp="swiglu",
        bias=False,
        dropout=_as_float(get("attention_dropout")),
        tie_embeddings=get("tie_word_embeddings"),
        norm_eps=_as_float(get("rms_norm_eps")),
        rope_theta=_as_float(_llama_rope_theta(hf)),
    )


def config_to_llama(
    cfg: GPTConfig, *, bos_token_id: int | None = None, eos_token_id: int | None = None
) -> dict[str, Any]:
    """Keyword arguments for `transformers.LlamaConfig` describing `cfg`.

    The RoPE base goes in both spellings: `rope_theta` (transformers 4) and
    `rope_parameters` (transformers 5). Token ids default to None; pass the tokenizer's.
    """
    _require_llama_shape(cfg)
    return {
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.n_embd,
        "intermediate_size": cfg.hidden_size,
        "num_hidden_layers": cfg.n_layer,
        "num_attention_heads": cfg.n_head,
        "num_key_value_heads": cfg.n_head,
        "head_dim": cfg.head_size,
        "hidden_act": "silu",
        "max_position_embeddings": cfg.block_size,
        "rms_norm_eps": cfg.norm_eps,
        "tie_word_embeddings": cfg.tie_embeddings,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "attention_bias": False,
        "attention_dropout": cfg.dropout,
        "mlp_bias": False,
        "bos_token_id": bos_token_id,
        "eos_token_id": eos_token_id,
    }


def _getter(
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


def _llama_rope_theta(hf: Mapping[str, Any]) -> Any:
    """The RoPE base of a Llama config, refusing every RoPE variant minigpt lacks."""
    theta = hf.get("rope_theta", LLAMA_DEFAULTS["rope_theta"])
    for key in ("rope_scaling", "rope_parameters"):  # transformers 4, then 5
        params = hf.get(key)
        if params is None:
            continue
        if not isinstance(params, Mapping):
            raise ConfigError(f"Llama config {key} must be an object or null, got {params!r}")
        # Each is checked on its own, so a stale entry in one cannot hide behind the other.
        rope_type = params.get("rope_type", params.get("type", "default"))
        if rope_type != "default":
            raise ConfigError(
                f"Llama config {key} asks for rope scaling of type {rope_type!r}; "
                "minigpt supports plain RoPE (rope_type 'default') only"
            )
        if params.get("partial_rotary_factor", 1.0) != 1.0:
            raise ConfigError(
                f"Llama config {key} sets partial_rotary_factor; minigpt rotates every channel"
            )
        theta = params.get("rope_theta", theta)
    return theta


def _gpt_config(arch: str, **fields: Any) -> GPTConfig:
    try:
        return GPTConfig(**fields)
    except ConfigError as e:
        raise ConfigError(f"{arch} config does not make a valid minigpt model: {e}") from e


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _as_float(value: Any) -> Any:
    """JSON ints as floats (`"rms_norm_eps": 0` style); anything else is left for validation."""
    if _is_int(value):
        return float(value)
    return value


def _require_gpt2_shape(cfg: GPTConfig) -> None:
    _require_shape(cfg, "GPT-2", pos_encoding="learned", norm="layernorm", mlp="gelu", bias=True)


def _require_llama_shape(cfg: GPTConfig) -> None:
    _require_shape(cfg, "Llama", pos_encoding="rope", norm="rmsnorm", mlp="swiglu", bias=False)


def _require_shape(cfg: GPTConfig, arch: str, **want: Any) -> None:
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


def gpt2_rules(cfg: GPTConfig) -> list[Rule]:
    """The tensor mapping of GPT-2; `lm_head.weight` only when untied."""
    rules = [Rule("wte.weight", ("wte.weight",)), Rule("wpe.weight", ("wpe.weight",))]
    for i in range(cfg.n_layer):
        for part in ("ln_1", "ln_2"):
            for p in ("weight", "bias"):
                rules.append(Rule(f"h.{i}.{part}.{p}", (f"h.{i}.{part}.{p}",)))
        for part in ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj"):
            rules.append(Rule(f"h.{i}.{part}.weight", (f"h.{i}.{part}.weight",), transpose=True))
            rules.append(Rule(f"h.{i}.{part}.bias", (f"h.{i}.{part}.bias",)))
    rules += [Rule("ln_f.weight", ("ln_f.weight",)), Rule("ln_f.bias", ("ln_f.bias",))]
    if not cfg.tie_embeddings:
        rules.append(Rule("lm_head.weight", ("lm_head.weight",)))
    return rules


def llama_rules(cfg: GPTConfig) -> list[Rule]:
    """The tensor mapping of Llama; `lm_head.weight` only when untied."""
    rules = [Rule("wte.weight", ("embed_tokens.weight",))]
    for i in range(cfg.n_layer):
        hf, mg = f"layers.{i}", f"h.{i}"
        qkv = tuple(f"{hf}.self_attn.{p}_proj.weight" for p in "qkv")
        rules += [
            Rule(f"{mg}.ln_1.weight", (f"{hf}.input_layernorm.weight",)),
            Rule(f"{mg}.attn.c_attn.weight", qkv),  # rows [q; k; v]
            Rule(f"{mg}.attn.c_proj.weight", (f"{hf}.self_attn.o_proj.weight",)),
            Rule(f"{mg}.ln_2.weight", (f"{hf}.post_attention_layernorm.weight",)),
            # MLP.forward chunks c_fc's output as (gate, up), in that order.
            Rule(
                f"{mg}.mlp.c_fc.weight",
                (f"{hf}.mlp.gate_proj.weight", f"{hf}.mlp.up_proj.weight"),
            ),
            Rule(f"{mg}.mlp.c_proj.weight", (f"{hf}.mlp.down_proj.weight",)),
        ]
    rules.append(Rule("ln_f.weight", ("norm.weight",)))
    if not cfg.tie_embeddings:
        rules.append(Rule("lm_head.weight", ("lm_head.weight",)))
    return rules


def state_dict_from_gpt2(sd: Mapping[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
    """A `GPT(cfg)` state dict from a GPT-2 one (`GPT2LMHeadModel` or `GPT2Model`)."""
    _require_gpt2_shape(cfg)
    hf = _strip_prefix(sd, "transformer.", GPT2_BUFFERS, "GPT-2")
    return _from_hf(hf, cfg, gpt2_rules(cfg), "GPT-2")


def state_dict_to_gpt2(sd: Mapping[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
    """A `GPT2LMHeadModel` state dict from a `GPT(cfg)` one."""
    _require_gpt2_shape(cfg)
    return _to_hf(sd, cfg, gpt2_rules(cfg), "transformer.", "GPT-2")


def state_dict_from_llama(sd: Mapping[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
    """A `GPT(cfg)` state dict from a Llama one (`LlamaForCausalLM` or `LlamaModel`)."""
    _require_llama_shape(cfg)
    hf = _strip_prefix(sd, "model.", LLAMA_BUFFERS, "Llama")
    return _from_hf(hf, cfg, llama_rules(cfg), "Llama")


def state_dict_to_llama(sd: Mapping[str, Tensor], cfg: GPTConfig) -> dict[str, Tensor]:
    """A `LlamaForCausalLM` state dict from a `GPT(cfg)` one."""
    _require_llama_shape(cfg)
    return _to_hf(sd, cfg, llama_rules(cfg), "model.", "Llama")


def minigpt_shapes(cfg: GPTConfig) -> dict[str, torch.Size]:
    """Every key of `GPT(cfg).state_dict()` and its shape, without allocating weights."""
    with torch.device("meta"):
        model = GPT(cfg)
    return {k: v.shape for k, v in model.state_dict().items()}


def _strip_prefix(
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


def _from_hf(
    hf: dict[str, Tensor], cfg: GPTConfig, rules: Sequence[Rule], arch: str
) -> dict[str, Tensor]:
    shapes = minigpt_shapes(cfg)
    out: dict[str, Tensor] = {}
    for rule in rules:
        parts = [_take(hf, name, _hf_shape(shapes[rule.mg], rule), arch) for name in rule.hf]
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


def _to_hf(
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
            pieces = [p.clone() for p in t.chunk(len(rule.hf), dim=0)]
        else:
            pieces = [t]
        for name, piece in zip(rule.hf, pieces, strict=True):
            out[name if name == "lm_head.weight" else prefix + name] = piece
    if cfg.tie_embeddings:
        # HF's state_dict lists the tied head too (the same tensor), so strict loading works.
        (embedding,) = (r.hf[0] for r in rules if r.mg == "wte.weight")
        out["lm_head.weight"] = out[prefix + embedding]
    return out


def _hf_shape(mg_shape: torch.Size, rule: Rule) -> tuple[int, ...]:
    """The shape each HF piece of `rule` must have."""
    if rule.transpose:
        return tuple(reversed(mg_shape))
    n = len(rule.hf)
    return (mg_shape[0] // n, *mg_shape[1:])


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
