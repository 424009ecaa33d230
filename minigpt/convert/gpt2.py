"""GPT-2: `GPT2LMHeadModel` settings and weights to and from minigpt's.

GPT-2 = learned positions, LayerNorm, tanh-GELU MLP, biases everywhere. GPT-2 stores
its linear layers as `Conv1D`, whose weight is (in, out); `nn.Linear` is (out, in),
so every matrix except the embeddings is transposed.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from minigpt.config import GPTConfig
from minigpt.convert.common import (
    GPT2_COLUMN,
    Layout,
    Rule,
    getter,
    gpt_config,
    require_shape,
    unembedding_rules,
)
from minigpt.errors import ConfigError
from minigpt.presets import GPT2_STYLE

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

# Activation names transformers maps to exactly minigpt's non-linearities.
GPT2_ACTIVATIONS = ("gelu_new", "gelu_pytorch_tanh", "gelu_python_tanh")  # tanh GELU

# Buffers transformers may have saved next to the weights: the causal mask of GPT-2
# attention. They are recomputed, never loaded.
GPT2_BUFFERS = r"h\.\d+\.attn\.(bias|masked_bias)"


# ---------------------------------------------------------------------------------
# Settings.


def config_from_gpt2(hf: Mapping[str, Any]) -> GPTConfig:
    """The minigpt shape of a GPT-2 `config.json` (or `GPT2Config.to_dict()`).

    minigpt has one dropout rate; it takes GPT-2's `resid_pdrop`.
    """
    get = getter(hf, GPT2_DEFAULTS, "gpt2", "GPT-2")
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
    return gpt_config("GPT-2", get, GPT2_COLUMN, GPT2_STYLE)


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


def _require_gpt2_shape(cfg: GPTConfig) -> None:
    require_shape(cfg, "GPT-2", **GPT2_STYLE)
    if cfg.kv_heads != cfg.n_head:
        raise ConfigError(
            f"GPT-2 has no grouped-query attention: it needs n_kv_head equal to n_head "
            f"({cfg.n_head}), but this model has n_kv_head={cfg.n_kv_head}"
        )


# ---------------------------------------------------------------------------------
# Tensors.


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
    return rules + unembedding_rules(cfg)


GPT2 = Layout("GPT-2", "transformer.", GPT2_BUFFERS, gpt2_rules, _require_gpt2_shape)


# (sd, cfg) -> state dict: from the architecture's tensors to minigpt's, and back.
state_dict_from_gpt2 = GPT2.state_dict_from
state_dict_to_gpt2 = GPT2.state_dict_to
