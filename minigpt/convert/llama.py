"""Llama: `LlamaForCausalLM` settings and weights to and from minigpt's.

Llama = RoPE, RMSNorm, SwiGLU MLP, no biases. Its separate q/k/v projections are
stacked row-wise into `c_attn` ([q; k; v]) and gate/up into `mlp.c_fc` ([gate; up]).
With grouped-query attention (`num_key_value_heads` < `num_attention_heads`, minigpt's
n_kv_head) k and v have num_key_value_heads * head_dim rows each; Llama's `repeat_kv`
gives query head h the key/value head h // (heads per group), as minigpt's SDPA does.
minigpt's RoPE rotates the same half-split channel pairs (i, i + hs/2) as Llama's
`rotate_half`, so queries and keys need no permutation.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from minigpt.config import GPTConfig
from minigpt.convert.common import (
    LLAMA_COLUMN,
    Layout,
    Rule,
    as_float,
    getter,
    gpt_config,
    require_shape,
    unembedding_rules,
)
from minigpt.errors import ConfigError
from minigpt.presets import MODERN
from minigpt.schema import is_int

# transformers' own defaults, used for keys a config.json leaves out: `save_pretrained`
# writes only the values that differ from these, so a missing key means "the default".
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
LLAMA_ACTIVATIONS = ("silu", "swish")  # SiLU, SwiGLU's gate

# Buffers transformers may have saved next to the weights: Llama's rotary frequencies.
# They are recomputed, never loaded.
LLAMA_BUFFERS = r"(layers\.\d+\.self_attn\.)?rotary_emb\.(inv_freq|original_inv_freq)"


# ---------------------------------------------------------------------------------
# Settings.


def config_from_llama(hf: Mapping[str, Any]) -> GPTConfig:
    """The minigpt shape of a Llama `config.json` (or `LlamaConfig.to_dict()`).

    Reads the RoPE base from transformers 5's `rope_parameters`, or from the older
    top-level `rope_theta` with `rope_scaling`. minigpt's dropout takes `attention_dropout`.
    """
    get = getter(hf, LLAMA_DEFAULTS, "llama", "Llama")
    if get("hidden_act") not in LLAMA_ACTIVATIONS:
        raise ConfigError(
            f"Llama config sets hidden_act={get('hidden_act')!r}; "
            "minigpt's SwiGLU MLP gates with silu only"
        )
    n_head, n_embd = get("num_attention_heads"), get("hidden_size")
    n_kv = get("num_key_value_heads")
    if n_kv is not None and not (
        is_int(n_kv) and is_int(n_head) and 1 <= n_kv <= n_head and n_head % n_kv == 0
    ):
        raise ConfigError(
            f"Llama config sets num_key_value_heads={n_kv!r}; it must divide "
            f"num_attention_heads ({n_head!r})"
        )
    if n_kv == n_head:
        n_kv = None  # every query head has its own keys: plain multi-head attention
    head_dim = get("head_dim")
    if head_dim is not None and not (
        is_int(head_dim) and is_int(n_head) and n_head > 0 and head_dim * n_head == n_embd
    ):
        raise ConfigError(
            f"Llama config sets head_dim={head_dim!r}; minigpt needs "
            f"hidden_size / num_attention_heads ({n_embd!r} / {n_head!r})"
        )
    for flag in ("attention_bias", "mlp_bias"):
        if get(flag):
            raise ConfigError(f"Llama config sets {flag}=True; minigpt's Llama shape has no biases")
    theta = as_float(_llama_rope_theta(hf))
    return gpt_config("Llama", get, LLAMA_COLUMN, MODERN, n_kv_head=n_kv, rope_theta=theta)


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
        "num_key_value_heads": cfg.kv_heads,
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


def _require_llama_shape(cfg: GPTConfig) -> None:
    require_shape(cfg, "Llama", **MODERN)


# ---------------------------------------------------------------------------------
# Tensors.


def llama_rules(cfg: GPTConfig) -> list[Rule]:
    """The tensor mapping of Llama; `lm_head.weight` only when untied."""
    rules = [Rule("wte.weight", ("embed_tokens.weight",))]
    qkv_rows = (cfg.n_embd, cfg.kv_size, cfg.kv_size)  # k and v are smaller with GQA
    for i in range(cfg.n_layer):
        hf, mg = f"layers.{i}", f"h.{i}"
        qkv = tuple(f"{hf}.self_attn.{p}_proj.weight" for p in "qkv")
        rules += [
            Rule(f"{mg}.ln_1.weight", (f"{hf}.input_layernorm.weight",)),
            Rule(f"{mg}.attn.c_attn.weight", qkv, rows=qkv_rows),  # rows [q; k; v]
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
    return rules + unembedding_rules(cfg)


LLAMA = Layout("Llama", "model.", LLAMA_BUFFERS, llama_rules, _require_llama_shape)


# (sd, cfg) -> state dict: from the architecture's tensors to minigpt's, and back.
state_dict_from_llama = LLAMA.state_dict_from
state_dict_to_llama = LLAMA.state_dict_to
