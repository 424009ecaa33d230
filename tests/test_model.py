"""The model's invariants: causality, the KV cache, initial loss, learning, counting."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from minigpt.config import GPTConfig
from minigpt.errors import ConfigError
from minigpt.kvcache import KVCache
from minigpt.model import GPT
from minigpt.parameters import PARAM_CATEGORIES, count_parameters
from minigpt.positional import sinusoidal_table
from minigpt.schema import from_dict, to_dict
from tests.conftest import tiny_config

VARIANTS = [
    dict(pos_encoding="learned", norm="layernorm", mlp="gelu", bias=True),
    dict(pos_encoding="sinusoidal", norm="layernorm", mlp="gelu", bias=False),
    dict(pos_encoding="rope", norm="rmsnorm", mlp="swiglu", bias=False),
    dict(pos_encoding="rope", norm="layernorm", mlp="gelu", bias=True, tie_embeddings=False),
]
IDS = [v["pos_encoding"] + "-" + v["mlp"] + ("-untied" if len(v) > 4 else "") for v in VARIANTS]


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_causality(variant: dict) -> None:
    """Changing token t+1 leaves the logits at positions <= t unchanged."""
    torch.manual_seed(0)
    model = GPT(tiny_config(**variant)).eval()
    idx = torch.randint(0, 64, (2, 32))
    logits = model(idx)
    for t in (0, 7, 30):
        changed = idx.clone()
        changed[:, t + 1] = (changed[:, t + 1] + 1) % 64
        other = model(changed)
        torch.testing.assert_close(other[:, : t + 1], logits[:, : t + 1], rtol=0, atol=0)
        assert not torch.allclose(other[:, t + 1 :], logits[:, t + 1 :])


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_kv_cache_prefill_and_decode_match_full_forward(variant: dict) -> None:
    """Prefill, a chunk on a non-empty cache, and one-token steps equal one full pass."""
    torch.manual_seed(0)
    config = tiny_config(**variant)
    model = GPT(config).eval()
    idx = torch.randint(0, 64, (3, 20))
    full = model(idx)
    cache = KVCache(config, batch_size=3)
    parts = [model(idx[:, :8], cache), model(idx[:, 8:15], cache)]
    parts += [model(idx[:, t : t + 1], cache) for t in range(15, 20)]
    assert cache.pos == 20
    torch.testing.assert_close(torch.cat(parts, dim=1), full, rtol=1e-5, atol=1e-5)


def test_last_only_is_the_last_position_of_the_full_logits() -> None:
    torch.manual_seed(0)
    model = GPT(tiny_config()).eval()
    idx = torch.randint(0, 64, (2, 9))
    last = model(idx, last_only=True)
    assert last.shape == (2, 1, 64)
    torch.testing.assert_close(last, model(idx)[:, -1:], rtol=1e-5, atol=1e-6)


def test_forward_refuses_more_than_block_size() -> None:
    model = GPT(tiny_config())
    with pytest.raises(ValueError, match="block_size"):
        model(torch.zeros(1, 33, dtype=torch.long))


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_initial_loss_is_close_to_ln_vocab(variant: dict) -> None:
    """A fresh model predicts nearly uniformly: loss ~ ln(vocab_size)."""
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=500, **variant))
    idx, targets = torch.randint(0, 500, (2, 8, 32))
    logits = model(idx)
    loss = F.cross_entropy(logits.flatten(0, 1), targets.flatten())
    assert abs(loss.item() - math.log(500)) < 0.1


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_one_batch_overfits(variant: dict) -> None:
    torch.manual_seed(0)
    model = GPT(tiny_config(**variant))
    x = torch.randint(0, 64, (4, 32))
    y = torch.roll(x, -1, dims=1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = F.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_tied_weights_are_one_matrix() -> None:
    model = GPT(tiny_config())
    assert model.lm_head.weight is model.wte.weight
    untied = GPT(tiny_config(tie_embeddings=False))
    assert untied.lm_head.weight is not untied.wte.weight


@pytest.mark.parametrize("variant", VARIANTS, ids=IDS)
def test_parameter_categories_add_up(variant: dict) -> None:
    model = GPT(tiny_config(**variant))
    counts = count_parameters(model)
    assert set(counts) == set(PARAM_CATEGORIES)
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())
    d = 32
    per_layer_qkv = d * d + (d if variant["bias"] else 0)
    assert counts["query"] == counts["key"] == counts["value"] == 2 * per_layer_qkv
    assert counts["embedding"] == 64 * d
    assert counts["unembedding"] == (0 if variant.get("tie_embeddings", True) else 64 * d)
    assert counts["positions"] == (32 * d if variant["pos_encoding"] == "learned" else 0)
    assert model.config.approx_num_params() <= sum(counts.values())


def test_sinusoidal_table_is_the_papers() -> None:
    table = sinusoidal_table(50, 16)
    assert table.abs().max() <= 1.0
    pos, i = 7, 3
    angle = pos / 10000 ** (2 * i / 16)
    assert table[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
    assert table[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_sinusoidal_and_rope_tables_are_not_weights() -> None:
    for pos in ("sinusoidal", "rope"):
        names = set(GPT(tiny_config(pos_encoding=pos)).state_dict())
        assert not any("sinusoidal" in n or "rope" in n for n in names)


def test_config_round_trips_through_json() -> None:
    config = tiny_config(pos_encoding="rope", mlp="swiglu", n_inner=40, dropout=0.1,
                         n_head=4, n_kv_head=2)  # fmt: skip
    assert from_dict(GPTConfig, json.loads(json.dumps(to_dict(config)))) == config


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(n_embd=30, n_head=4), "divisible by n_head"),
        (dict(n_layer=True), "wrong type"),
        (dict(n_layer=0), "n_layer"),
        (dict(dropout=float("nan")), "finite"),
        (dict(dropout=1.5), "dropout"),
        (dict(pos_encoding="alibi"), "pos_encoding"),
        (dict(n_embd=10**12), "n_embd"),
        (dict(pos_encoding="rope", n_embd=30, n_head=10), "even head size"),
        (dict(vocab_size=1_000_000, n_embd=65536, n_head=1), "parameters"),
        (dict(n_head=4, n_kv_head=3), r"n_kv_head \(3\) must divide n_head \(4\)"),
        (dict(n_head=4, n_kv_head=0), "n_kv_head"),
        (dict(n_head=4, n_kv_head=2.0), "wrong type"),
    ],
)
def test_config_rejects_inconsistent_values(fields: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        tiny_config(**fields)


def test_config_from_dict_requires_exact_keys() -> None:
    data = to_dict(tiny_config())
    with pytest.raises(ConfigError, match="unknown"):
        from_dict(GPTConfig, {**data, "n_experts": 8})
    del data["n_layer"]
    with pytest.raises(ConfigError, match="missing"):
        from_dict(GPTConfig, data)


def test_device_and_dtype_follow_the_weights() -> None:
    model = GPT(tiny_config())
    assert model.device == torch.device("cpu") and model.dtype == torch.float32
    model.to(torch.float64)
    assert model.dtype == torch.float64 == model.lm_head.weight.dtype
