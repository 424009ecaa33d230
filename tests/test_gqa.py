"""Grouped-query attention (`GPTConfig.n_kv_head`): n_kv_head key/value heads, each
shared by n_head / n_kv_head query heads. Parity with transformers' Llama at 1, 2 and 4
key/value heads (logits both ways, greedy decoding), the KV cache, training, the
command line, checkpoints and the parameter counts."""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import transformers  # the reference implementation (a test dependency)

from minigpt.checkpoint import load_checkpoint, save_checkpoint
from minigpt.cli import main
from minigpt.config import GPTConfig, SampleConfig, TrainConfig
from minigpt.convert import (
    config_from_llama,
    config_to_gpt2,
    config_to_llama,
    state_dict_from_llama,
    state_dict_to_gpt2,
    state_dict_to_llama,
)
from minigpt.data.dataset import Dataset
from minigpt.errors import ConfigError
from minigpt.generation.generate import generate
from minigpt.generation.memory import Plan, estimate
from minigpt.model import GPT, KVCache, Trace
from minigpt.parameters import count_parameters, flops_per_token, parameter_parts
from minigpt.schema import from_dict, to_dict
from minigpt.tokenizer.encodings import CharTokenizer
from minigpt.training.sizing import shape_parameters, smaller_shape
from minigpt.training.trainer import train
from tests.conftest import tiny_config
from tests.test_parity import LLAMA_SHAPE, QUIET, llama_shaped, minigpt_model, randomize, token_ids

KV_HEADS = (1, 2, 4)  # of 4 query heads: multi-query, grouped, plain multi-head


pytestmark = pytest.mark.usefixtures("quiet_transformers")


def hf_llama_gqa(n_kv: int, tie: bool) -> torch.nn.Module:
    torch.manual_seed(0)
    shape = {**LLAMA_SHAPE, "num_key_value_heads": n_kv}
    config = transformers.LlamaConfig(
        **shape, **QUIET, tie_word_embeddings=tie, attn_implementation="eager"
    )
    model = transformers.LlamaForCausalLM(config).eval()
    randomize(model, seed=2)
    return model


def gqa_shaped(n_kv: int, tie: bool = True) -> GPTConfig:
    return replace(llama_shaped(tie), n_kv_head=None if n_kv == 4 else n_kv)


# ---------------------------------------------------------------------------------
# Parity with transformers' Llama.


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("n_kv", KV_HEADS)
def test_llama_with_gqa_to_minigpt_logits(n_kv: int, tie: bool) -> None:
    hf = hf_llama_gqa(n_kv, tie)
    cfg = config_from_llama(hf.config.to_dict())
    assert cfg == gqa_shaped(n_kv, tie)  # 4 of 4 is plain attention: n_kv_head None
    assert cfg.kv_heads == n_kv
    model = GPT(cfg).eval()
    model.load_state_dict(state_dict_from_llama(hf.state_dict(), cfg), strict=True)
    c_attn = model.h[0].attn.c_attn.weight
    assert c_attn.shape == (64 + 2 * n_kv * 16, 64)
    idx = token_ids(cfg.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(model(idx), hf(idx).logits)


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("n_kv", KV_HEADS)
def test_minigpt_with_gqa_to_llama_logits_and_round_trips(n_kv: int, tie: bool) -> None:
    cfg = gqa_shaped(n_kv, tie)
    ours = minigpt_model(cfg, seed=5)
    exported = config_to_llama(cfg)
    assert exported["num_key_value_heads"] == n_kv
    assert config_from_llama(exported) == cfg
    hf = transformers.LlamaForCausalLM(
        transformers.LlamaConfig(**exported, attn_implementation="eager")
    ).eval()
    there = state_dict_to_llama(ours.state_dict(), cfg)
    assert there["model.layers.1.self_attn.k_proj.weight"].shape == (n_kv * 16, 64)
    hf.load_state_dict(there, strict=True)
    idx = token_ids(cfg.vocab_size)
    with torch.no_grad():
        torch.testing.assert_close(ours(idx), hf(idx).logits)
    back = state_dict_from_llama(there, cfg)
    for name, tensor in ours.state_dict().items():
        assert torch.equal(back[name], tensor), name


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("n_kv", KV_HEADS)
def test_greedy_decoding_with_the_kv_cache_matches_transformers(n_kv: int, tie: bool) -> None:
    hf = hf_llama_gqa(n_kv, tie)
    cfg = config_from_llama(hf.config.to_dict())
    model = GPT(cfg).eval()
    model.load_state_dict(state_dict_from_llama(hf.state_dict(), cfg), strict=True)
    prompt = token_ids(cfg.vocab_size)[:, :9]  # (2, 9)
    steps = list(generate(model, prompt, SampleConfig(temperature=0.0, max_new_tokens=6)))
    ours = torch.stack([s.token for s in steps], dim=1)  # (2, 6)
    with torch.no_grad():
        theirs = hf.generate(
            prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=6,
            do_sample=False, pad_token_id=0,
        )[:, prompt.size(1) :]  # fmt: skip
    assert torch.equal(ours, theirs)


def test_gpt2_refuses_grouped_query_attention() -> None:
    cfg = GPTConfig(vocab_size=97, block_size=32, n_layer=2, n_head=4, n_embd=48, n_kv_head=2)
    with pytest.raises(ConfigError, match="GPT-2 has no grouped-query attention"):
        config_to_gpt2(cfg)
    with pytest.raises(ConfigError, match="n_kv_head"):
        state_dict_to_gpt2(GPT(cfg).state_dict(), cfg)
    config_to_gpt2(replace(cfg, n_kv_head=4))  # as many kv heads as heads: plain attention


# ---------------------------------------------------------------------------------
# The model: KV cache, trace, counts.

GQA_VARIANTS = [
    dict(n_kv_head=1, pos_encoding="rope", norm="rmsnorm", mlp="swiglu", bias=False),
    dict(n_kv_head=2, pos_encoding="learned", bias=True),
    dict(n_kv_head=2, pos_encoding="rope", tie_embeddings=False),
]
GQA_IDS = ["mqa-rope", "gqa-learned", "gqa-rope-untied"]


def gqa_model(variant: dict, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(tiny_config(n_head=4, **variant)).eval()


@pytest.mark.parametrize("variant", GQA_VARIANTS, ids=GQA_IDS)
def test_kv_cache_of_a_gqa_model_matches_the_full_forward(variant: dict) -> None:
    model = gqa_model(variant)
    config = model.config
    idx = torch.randint(0, 64, (3, 20))
    with torch.no_grad():
        full = model(idx)
        one_by_one = KVCache(config, batch_size=3)
        steps = [model(idx[:, t : t + 1], one_by_one) for t in range(20)]
        chunked = KVCache(config, batch_size=3)
        chunks = [model(idx[:, :8], chunked), model(idx[:, 8:15], chunked)]
        chunks += [model(idx[:, t : t + 1], chunked) for t in range(15, 20)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(torch.cat(chunks, dim=1), full, rtol=1e-5, atol=1e-5)
    n_kv = variant["n_kv_head"]
    shape = (config.n_layer, 3, n_kv, config.block_size, config.head_size)
    assert one_by_one.k.shape == one_by_one.v.shape == shape  # n_kv_head heads, not n_head
    plain = KVCache(replace(config, n_kv_head=None), batch_size=3)
    assert plain.k.numel() == one_by_one.k.numel() * (4 // n_kv)


def test_a_shared_prefill_repeats_a_gqa_cache() -> None:
    """num_samples > 1: one prompt prefilled, its cache copied into each row."""
    model = gqa_model(GQA_VARIANTS[0])
    prompt = torch.randint(0, 64, (1, 5))
    steps = list(generate(model, prompt, SampleConfig(temperature=0.0, max_new_tokens=4,
                                                      num_samples=3)))  # fmt: skip
    tokens = torch.stack([s.token for s in steps], dim=1)  # (3, 4): greedy rows agree
    assert tokens.shape == (3, 4) and bool((tokens == tokens[0]).all())
    single = list(generate(model, prompt, SampleConfig(temperature=0.0, max_new_tokens=4)))
    assert torch.equal(tokens[0], torch.cat([s.token for s in single]))


@pytest.mark.parametrize("variant", GQA_VARIANTS, ids=GQA_IDS)
def test_trace_records_every_query_head_and_keeps_the_logits(variant: dict) -> None:
    model = gqa_model(variant)
    idx = torch.randint(0, 64, (2, 12))
    trace = Trace()
    with torch.no_grad():
        traced, plain = model(idx, trace=trace), model(idx)
    torch.testing.assert_close(traced, plain, rtol=1e-5, atol=1e-5)
    assert len(trace.attention) == 2
    for weights, scores in zip(trace.attention, trace.scores, strict=True):
        assert weights.shape == scores.shape == (2, 4, 12, 12)  # per query head
    # Query heads of one group read the same keys, so with equal queries they would
    # agree; their own queries differ, so their patterns do too.
    assert not torch.allclose(trace.attention[0][:, 0], trace.attention[0][:, 1])


@pytest.mark.parametrize("variant", GQA_VARIANTS, ids=GQA_IDS)
def test_parameter_parts_of_a_gqa_model_add_up(variant: dict) -> None:
    model = gqa_model(variant)
    c = model.config
    counts = count_parameters(model)
    assert sum(counts.values()) == sum(p.numel() for p in model.parameters())
    assert shape_parameters(c) == sum(counts.values())
    kv = c.kv_heads * c.head_size
    bias = variant.get("bias", True)
    assert counts["query"] == c.n_layer * (c.n_embd * c.n_embd + (c.n_embd if bias else 0))
    assert counts["key"] == counts["value"] == c.n_layer * (kv * c.n_embd + (kv if bias else 0))
    parts = {p.name: p for p in parameter_parts(model)}
    assert parts["h.0.attn.c_attn.weight[key]"].values.shape == (kv, c.n_embd)
    w = model.h[0].attn.c_attn.weight
    assert torch.equal(parts["h.0.attn.c_attn.weight[value]"].values, w[c.n_embd + kv :])
    assert c.approx_num_params() <= sum(counts.values())
    plain = replace(c, n_kv_head=None)
    saved = 2 * c.n_layer * c.n_embd * (c.n_embd - kv)  # K and V rows gone
    assert plain.approx_num_params() - c.approx_num_params() == saved
    assert flops_per_token(plain) - flops_per_token(c) == 6 * saved


def test_generation_memory_counts_the_smaller_cache() -> None:
    plan = Plan(rows=2, prompt_len=10, sampling=SampleConfig(max_new_tokens=20))
    gqa = tiny_config(n_head=4, n_kv_head=1)
    assert estimate(replace(gqa, n_kv_head=None), 4, plan).kv_cache == pytest.approx(
        4 * estimate(gqa, 4, plan).kv_cache, rel=1e-3
    )


def test_a_smaller_shape_suggestion_keeps_a_valid_grouping() -> None:
    config = GPTConfig(vocab_size=512, block_size=64, n_layer=4, n_head=8, n_embd=256,
                       n_kv_head=4)  # fmt: skip
    shape = smaller_shape(config, 100_000)
    assert shape is not None and shape.n_kv_head is not None
    assert shape.n_head % shape.n_kv_head == 0 and shape.n_kv_head <= 4


# ---------------------------------------------------------------------------------
# Settings, checkpoints, training and the command line.


@pytest.mark.parametrize(
    ("n_kv_head", "n_head"), [(3, 4), (0, 4), (8, 4), (-2, 4)], ids=["3of4", "0", "8of4", "neg"]
)
def test_a_bad_n_kv_head_is_one_clear_message(n_kv_head: int, n_head: int) -> None:
    with pytest.raises(ConfigError, match=r"n_kv_head \(.*\) must divide n_head \(4\); try"):
        tiny_config(n_head=n_head, n_kv_head=n_kv_head)


def test_n_kv_head_round_trips_through_json() -> None:
    config = tiny_config(n_head=4, n_kv_head=2)
    assert from_dict(GPTConfig, json.loads(json.dumps(to_dict(config)))) == config
    assert tiny_config().kv_heads == 2 and tiny_config().n_kv_head is None


def test_checkpoints_keep_n_kv_head_and_old_ones_still_load(tmp_path: Path) -> None:
    tok = CharTokenizer.from_text("abcdefgh")
    model = GPT(tiny_config(vocab_size=tok.vocab_size, n_head=4, n_kv_head=2))
    save_checkpoint(tmp_path / "gqa", model, tok, {})
    assert load_checkpoint(tmp_path / "gqa").config.n_kv_head == 2
    # A config.json written before the field existed: plain multi-head attention.
    save_checkpoint(tmp_path / "old", GPT(tiny_config(vocab_size=tok.vocab_size)), tok, {})
    meta = json.loads((tmp_path / "old" / "config.json").read_text())
    del meta["model"]["n_kv_head"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(meta))
    assert load_checkpoint(tmp_path / "old").config.n_kv_head is None


def test_training_from_scratch_with_gqa(char_dataset: Dataset, tmp_path: Path) -> None:
    vocab = char_dataset.tokenizer.vocab_size
    config = TrainConfig(max_iters=30, batch_size=8, eval_interval=30, eval_iters=2,
                         log_interval=5, lr=3e-3, warmup_iters=5, sample_every=0,
                         device="cpu")  # fmt: skip
    model_config = tiny_config(vocab_size=vocab, n_head=4, n_kv_head=1)
    result = train(model_config, config, char_dataset, tmp_path / "run")
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == 6 and all(math.isfinite(x) for x in losses)
    assert losses[-1] < losses[0] - 0.3  # falling
    assert result.val_loss < math.log(vocab)
    assert load_checkpoint(tmp_path / "run").config.n_kv_head == 1


def test_train_accepts_n_kv_head_on_the_command_line(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    Path("t.txt").write_text(small_text[:5000])
    args = ["train", "t.txt", "--preset", "tiny", "-t", "char", "--max-iters", "2",
            "--eval-interval", "2", "--batch-size", "2", "--sample-every", "0",
            "--threads", "1", "--run", "g", "--n-head", "4"]  # fmt: skip
    assert main([*args, "--n-kv-head", "2"]) == 0, capsys.readouterr().err
    assert "4 heads (2 key/value)" in capsys.readouterr().out
    saved = json.loads((tmp_path / "checkpoints" / "g" / "latest" / "config.json").read_text())
    assert saved["model"]["n_kv_head"] == 2 and saved["model"]["n_head"] == 4


def test_train_refuses_a_bad_n_kv_head_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MINIGPT_DEBUG", raising=False)
    Path("t.txt").write_text("to be or not to be " * 50)
    code = main(["train", "t.txt", "--preset", "tiny", "--n-head", "4", "--n-kv-head", "3"])
    err = capsys.readouterr().err
    assert code != 0
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "n_kv_head (3) must divide n_head (4); try n_kv_head in [1, 2, 4]" in lines[0]
    assert not (tmp_path / "checkpoints").exists()
