"""minigpt matches Hugging Face GPT-2 and Llama: weights mapped by `minigpt.convert`
give the same logits in both directions, round trips are exact, and what minigpt cannot
represent is refused with a `ConfigError` or `CheckpointError` naming it.

The reference models are tiny, random and built in-process: no download, no network.
They use transformers' "eager" attention (an explicit softmax), an implementation
independent of minigpt's `scaled_dot_product_attention`.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
import transformers  # the reference implementation (a test dependency)

from minigpt.config import GPTConfig
from minigpt.convert import (
    config_from_gpt2,
    config_from_llama,
    config_to_gpt2,
    config_to_llama,
    state_dict_from_gpt2,
    state_dict_from_llama,
    state_dict_to_gpt2,
    state_dict_to_llama,
)
from minigpt.errors import CheckpointError, ConfigError
from minigpt.model import GPT

GPT2_SHAPE = dict(vocab_size=97, n_positions=32, n_embd=48, n_layer=2, n_head=4)
LLAMA_SHAPE = dict(
    vocab_size=101,
    hidden_size=64,
    intermediate_size=96,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=4,
    max_position_embeddings=64,
    rms_norm_eps=1e-5,
    rope_theta=5000.0,  # not the default 10000, so a dropped theta shows in the logits
)
QUIET = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)  # ids inside the vocab
T = 32


pytestmark = pytest.mark.usefixtures("quiet_transformers")


def randomize(model: torch.nn.Module, seed: int) -> None:
    """Larger random weights, non-zero biases and norm gains away from 1.

    With the usual 0.02 init attention is nearly uniform, and a swapped q/k or a
    gate/up mapping might still match within tolerance; with these it cannot (see
    `test_a_swapped_mapping_is_caught`). Larger still, fp32 rounding nears the tolerance.
    """
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            noise = torch.randn(p.shape, generator=gen)
            if p.dim() == 1 and name.endswith("weight"):  # a norm's gain
                p.copy_(1.0 + 0.2 * noise)
            else:
                p.copy_(0.1 * noise)


def hf_gpt2(tie: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        **GPT2_SHAPE, **QUIET, tie_word_embeddings=tie, attn_implementation="eager"
    )
    model = transformers.GPT2LMHeadModel(config).eval()
    randomize(model, seed=1)
    return model


def hf_llama(tie: bool = True) -> torch.nn.Module:
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        **LLAMA_SHAPE, **QUIET, tie_word_embeddings=tie, attn_implementation="eager"
    )
    model = transformers.LlamaForCausalLM(config).eval()
    randomize(model, seed=2)
    return model


def minigpt_model(cfg: GPTConfig, seed: int) -> GPT:
    torch.manual_seed(seed)
    model = GPT(cfg).eval()
    randomize(model, seed=seed)
    return model


def gpt2_shaped(tie: bool = True) -> GPTConfig:
    return GPTConfig(
        vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=48, tie_embeddings=tie
    )


def llama_shaped(tie: bool = True) -> GPTConfig:
    return GPTConfig(
        vocab_size=101,
        block_size=64,
        n_layer=2,
        n_head=4,
        n_embd=64,
        n_inner=96,
        pos_encoding="rope",
        norm="rmsnorm",
        mlp="swiglu",
        bias=False,
        tie_embeddings=tie,
        norm_eps=1e-5,
        rope_theta=5000.0,
    )


def token_ids(vocab_size: int) -> torch.Tensor:
    return torch.randint(vocab_size, (2, T), generator=torch.Generator().manual_seed(3))


@torch.no_grad()
def assert_same_logits(ours: GPT, theirs: torch.nn.Module) -> None:
    idx = token_ids(ours.config.vocab_size)
    torch.testing.assert_close(ours(idx), theirs(idx).logits)


# ---------------------------------------------------------------------------------
# Parity.


@pytest.mark.parametrize("tie", [True, False])
def test_gpt2_to_minigpt_logits(tie: bool) -> None:
    hf = hf_gpt2(tie)
    cfg = config_from_gpt2(hf.config.to_dict())
    assert cfg == replace(gpt2_shaped(tie), dropout=0.1)  # GPT-2's resid_pdrop
    model = GPT(cfg).eval()
    model.load_state_dict(state_dict_from_gpt2(hf.state_dict(), cfg), strict=True)
    assert_same_logits(model, hf)


def test_minigpt_to_gpt2_logits() -> None:
    cfg = gpt2_shaped()
    ours = minigpt_model(cfg, seed=4)
    hf = transformers.GPT2LMHeadModel(
        transformers.GPT2Config(**config_to_gpt2(cfg), attn_implementation="eager")
    ).eval()
    hf.load_state_dict(state_dict_to_gpt2(ours.state_dict(), cfg), strict=True)
    assert_same_logits(ours, hf)


@pytest.mark.parametrize("tie", [True, False])
def test_llama_to_minigpt_logits(tie: bool) -> None:
    hf = hf_llama(tie)
    cfg = config_from_llama(hf.config.to_dict())
    assert cfg == llama_shaped(tie)
    model = GPT(cfg).eval()
    model.load_state_dict(state_dict_from_llama(hf.state_dict(), cfg), strict=True)
    assert_same_logits(model, hf)


def test_minigpt_to_llama_logits() -> None:
    cfg = llama_shaped()
    ours = minigpt_model(cfg, seed=5)
    hf_config = transformers.LlamaConfig(**config_to_llama(cfg), attn_implementation="eager")
    assert hf_config.rope_parameters["rope_theta"] == 5000.0
    hf = transformers.LlamaForCausalLM(hf_config).eval()
    hf.load_state_dict(state_dict_to_llama(ours.state_dict(), cfg), strict=True)
    assert_same_logits(ours, hf)


def test_a_swapped_mapping_is_caught() -> None:
    """Negative control: the parity tests would notice q and k rows swapped in one layer."""
    hf = hf_llama()
    cfg = config_from_llama(hf.config.to_dict())
    sd = state_dict_from_llama(hf.state_dict(), cfg)
    q, k, v = sd["h.1.attn.c_attn.weight"].chunk(3)
    sd["h.1.attn.c_attn.weight"] = torch.cat([k, q, v])
    model = GPT(cfg).eval()
    model.load_state_dict(sd, strict=True)
    idx = token_ids(cfg.vocab_size)
    with torch.no_grad():
        assert (model(idx) - hf(idx).logits).abs().max() > 1e-2


# ---------------------------------------------------------------------------------
# Round trips and layouts.


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
@pytest.mark.parametrize("tie", [True, False])
def test_round_trips_are_exact(arch: str, tie: bool) -> None:
    if arch == "gpt2":
        cfg, to_hf, from_hf = gpt2_shaped(tie), state_dict_to_gpt2, state_dict_from_gpt2
        to_config, from_config = config_to_gpt2, config_from_gpt2
    else:
        cfg, to_hf, from_hf = llama_shaped(tie), state_dict_to_llama, state_dict_from_llama
        to_config, from_config = config_to_llama, config_from_llama
    assert from_config(to_config(cfg)) == cfg
    ours = minigpt_model(cfg, seed=6).state_dict()
    there = to_hf(ours, cfg)
    back = from_hf(there, cfg)
    assert list(back) == list(ours)
    for name, tensor in ours.items():
        assert torch.equal(back[name], tensor), name
    again = to_hf(back, cfg)
    assert list(again) == list(there)
    for name, tensor in there.items():
        assert torch.equal(again[name], tensor), name
    # No two exported tensors share storage, except the tied head (HF lists it too).
    pointers = [t.data_ptr() for name, t in there.items() if name != "lm_head.weight"]
    assert len(set(pointers)) == len(pointers)


def test_hf_prefixes_buffers_and_a_missing_tied_head_are_accepted() -> None:
    """Bare `GPT2Model` keys, saved attention-mask buffers, no `lm_head.weight`."""
    hf = hf_gpt2()
    cfg = config_from_gpt2(hf.config.to_dict())
    sd = {k.removeprefix("transformer."): v for k, v in hf.state_dict().items()}
    del sd["lm_head.weight"]
    sd["h.0.attn.bias"] = torch.tril(torch.ones(1, 1, 32, 32, dtype=torch.bool))
    sd["h.0.attn.masked_bias"] = torch.tensor(-1e4)
    model = GPT(cfg).eval()
    model.load_state_dict(state_dict_from_gpt2(sd, cfg), strict=True)
    assert_same_logits(model, hf)


def test_minigpt_weights_without_the_tied_head_export() -> None:
    cfg = llama_shaped()
    sd = minigpt_model(cfg, seed=7).state_dict()
    del sd["lm_head.weight"]
    out = state_dict_to_llama(sd, cfg)
    assert out["lm_head.weight"] is out["model.embed_tokens.weight"]


def test_llama_config_in_transformers_4_layout() -> None:
    """Older config.json files keep rope_theta at the top level, next to rope_scaling."""
    legacy = {"model_type": "llama", **LLAMA_SHAPE, "rope_scaling": None}
    legacy.update(tie_word_embeddings=True, attention_dropout=0.0)
    assert config_from_llama(legacy) == llama_shaped()
    assert config_from_llama({**legacy, "rope_theta": 500000}).rope_theta == 500000.0


def test_missing_config_keys_take_transformers_defaults() -> None:
    """`save_pretrained` leaves out values equal to the defaults."""
    for build, from_config in (
        (transformers.GPT2Config, config_from_gpt2),
        (transformers.LlamaConfig, config_from_llama),
    ):
        full = build(**QUIET).to_dict()
        assert from_config({"model_type": full["model_type"]}) == from_config(full)


# ---------------------------------------------------------------------------------
# What minigpt cannot represent.


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"activation_function": "relu"}, "activation_function"),
        ({"activation_function": "gelu"}, "activation_function"),  # erf GELU, not tanh
        ({"scale_attn_by_inverse_layer_idx": True}, "scale_attn_by_inverse_layer_idx"),
        ({"reorder_and_upcast_attn": True}, "reorder_and_upcast_attn"),
        ({"add_cross_attention": True}, "add_cross_attention"),
        ({"scale_attn_weights": False}, "scale_attn_weights"),
        ({"model_type": "gpt_neo"}, "model_type"),
        ({"n_head": 5}, "n_head"),  # 48 is not divisible by 5
        ({"n_positions": "32"}, "block_size"),
    ],
)
def test_unsupported_gpt2_configs(change: dict, named: str) -> None:
    hf = {**transformers.GPT2Config(**GPT2_SHAPE, **QUIET).to_dict(), **change}
    with pytest.raises(ConfigError, match=named):
        config_from_gpt2(hf)


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"num_key_value_heads": 3}, "num_key_value_heads"),  # does not divide 4 heads
        ({"num_key_value_heads": 8}, "num_key_value_heads"),  # more than the query heads
        ({"num_key_value_heads": "2"}, "num_key_value_heads"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"rope_parameters": {"rope_type": "linear", "factor": 2.0}}, "linear"),
        ({"rope_scaling": {"type": "dynamic", "factor": 2.0}}, "dynamic"),
        ({"rope_parameters": "big"}, "rope_parameters"),
        ({"attention_bias": True}, "attention_bias"),
        ({"mlp_bias": True}, "mlp_bias"),
        ({"head_dim": 32}, "head_dim"),
        ({"model_type": "mistral"}, "model_type"),
    ],
)
def test_unsupported_llama_configs(change: dict, named: str) -> None:
    hf = {**transformers.LlamaConfig(**LLAMA_SHAPE, **QUIET).to_dict(), **change}
    with pytest.raises(ConfigError, match=named):
        config_from_llama(hf)


def test_config_that_is_not_a_mapping() -> None:
    with pytest.raises(ConfigError, match="JSON object"):
        config_from_gpt2(["n_embd", 48])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cfg", "named"),
    [
        (replace(gpt2_shaped(), norm="rmsnorm"), "norm"),
        (replace(gpt2_shaped(), bias=False), "bias"),
        (replace(gpt2_shaped(), pos_encoding="sinusoidal"), "pos_encoding"),
    ],
)
def test_minigpt_shapes_gpt2_cannot_hold(cfg: GPTConfig, named: str) -> None:
    with pytest.raises(ConfigError, match=named):
        config_to_gpt2(cfg)
    with pytest.raises(ConfigError, match=named):
        state_dict_to_gpt2(GPT(cfg).state_dict(), cfg)


def test_minigpt_shapes_llama_cannot_hold() -> None:
    cfg = replace(llama_shaped(), mlp="gelu")
    with pytest.raises(ConfigError, match="mlp"):
        config_to_llama(cfg)
    with pytest.raises(ConfigError, match="pos_encoding"):
        state_dict_from_llama({}, gpt2_shaped())


def _gpt2_state() -> tuple[dict[str, torch.Tensor], GPTConfig]:
    hf = hf_gpt2()
    return dict(hf.state_dict()), config_from_gpt2(hf.config.to_dict())


def _llama_state(tie: bool = True) -> tuple[dict[str, torch.Tensor], GPTConfig]:
    hf = hf_llama(tie)
    return dict(hf.state_dict()), config_from_llama(hf.config.to_dict())


def test_missing_hf_tensor() -> None:
    sd, cfg = _gpt2_state()
    del sd["transformer.h.1.mlp.c_fc.bias"]
    with pytest.raises(CheckpointError, match=r"missing tensor 'h\.1\.mlp\.c_fc\.bias'"):
        state_dict_from_gpt2(sd, cfg)


def test_missing_untied_head() -> None:
    sd, cfg = _llama_state(tie=False)
    del sd["lm_head.weight"]
    with pytest.raises(CheckpointError, match="lm_head.weight"):
        state_dict_from_llama(sd, cfg)


def test_misshaped_hf_tensor() -> None:
    sd, cfg = _llama_state()
    sd["model.layers.0.self_attn.k_proj.weight"] = torch.zeros(32, 64)  # GQA-sized
    with pytest.raises(CheckpointError, match=r"layers\.0\.self_attn\.k_proj\.weight.*shape"):
        state_dict_from_llama(sd, cfg)


def test_untransposed_gpt2_matrix() -> None:
    sd, cfg = _gpt2_state()
    sd["transformer.h.0.mlp.c_fc.weight"] = sd["transformer.h.0.mlp.c_fc.weight"].t()
    with pytest.raises(CheckpointError, match=r"h\.0\.mlp\.c_fc\.weight"):
        state_dict_from_gpt2(sd, cfg)


def test_extra_hf_tensor() -> None:
    sd, cfg = _gpt2_state()
    sd["score.weight"] = torch.zeros(2, 48)
    with pytest.raises(CheckpointError, match="score.weight"):
        state_dict_from_gpt2(sd, cfg)


def test_non_tensor_entry() -> None:
    sd, cfg = _llama_state()
    sd["model.norm.weight"] = [1.0] * 64  # type: ignore[assignment]
    with pytest.raises(CheckpointError, match="norm.weight"):
        state_dict_from_llama(sd, cfg)


def test_tied_config_with_a_different_head() -> None:
    sd, cfg = _llama_state(tie=True)
    sd["lm_head.weight"] = sd["lm_head.weight"] + 1.0
    with pytest.raises(CheckpointError, match="lm_head.weight"):
        state_dict_from_llama(sd, cfg)


def test_minigpt_weights_that_do_not_fit_the_config() -> None:
    cfg = llama_shaped()
    sd = minigpt_model(cfg, seed=8).state_dict()
    missing = {k: v for k, v in sd.items() if k != "h.1.ln_2.weight"}
    with pytest.raises(CheckpointError, match=r"h\.1\.ln_2\.weight"):
        state_dict_to_llama(missing, cfg)
    with pytest.raises(CheckpointError, match=r"h\.0\.mlp\.c_fc\.weight.*shape"):
        state_dict_to_llama({**sd, "h.0.mlp.c_fc.weight": torch.zeros(96, 64)}, cfg)
    with pytest.raises(CheckpointError, match="wpe.weight"):
        state_dict_to_llama({**sd, "wpe.weight": torch.zeros(64, 64)}, cfg)
