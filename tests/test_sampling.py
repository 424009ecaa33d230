"""The sampler: filters, greedy, seeds, padded ids, the context window."""

import pytest
import torch

from minigpt.config import SampleConfig
from minigpt.errors import ConfigError
from minigpt.model import GPT
from minigpt.sampling import (
    generate,
    mask_padded_ids,
    sample_next_token,
    top_k_filter,
    top_p_filter,
)
from tests.conftest import tiny_config


def test_top_k_keeps_exactly_k_even_with_ties() -> None:
    logits = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0]])
    kept = torch.isfinite(top_k_filter(logits, 2))
    assert kept.sum().item() == 2
    assert top_k_filter(logits, 10) is logits


def test_top_p_keeps_the_nucleus() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(top_p_filter(probs.log(), 0.7))
    assert kept.tolist() == [[True, True, False, False]]
    tiny = torch.isfinite(top_p_filter(probs.log(), 1e-9))
    assert tiny.tolist() == [[True, False, False, False]]


def test_greedy_is_argmax() -> None:
    logits = torch.randn(5, 50)
    out = sample_next_token(logits, SampleConfig(temperature=0.0))
    assert torch.equal(out, logits.argmax(-1))


def test_padded_ids_are_never_drawn() -> None:
    logits = torch.zeros(1000, 10)
    logits[:, 8:] = 50.0  # padding rows that look very likely
    out = sample_next_token(logits, SampleConfig(temperature=1.0), valid_vocab=8)
    assert out.max().item() < 8
    assert torch.isinf(mask_padded_ids(logits, 8)[:, 8:]).all()


def test_temperature_sharpens_and_flattens() -> None:
    logits = torch.tensor([[2.0, 1.0, 0.0]]).expand(4000, 3)
    gen = torch.Generator().manual_seed(0)
    cold = sample_next_token(logits, SampleConfig(temperature=0.1), gen)
    hot = sample_next_token(logits, SampleConfig(temperature=10.0), gen)
    assert (cold == 0).float().mean() > 0.99
    assert 0.25 < (hot == 2).float().mean() < 0.42


@pytest.mark.parametrize(
    "fields",
    [dict(temperature=-1.0), dict(temperature=float("nan")), dict(max_new_tokens=-1),
     dict(top_k=0), dict(top_p=0.0), dict(top_p=float("nan")), dict(num_samples=0)],
)  # fmt: skip
def test_bad_sampling_options(fields: dict) -> None:
    with pytest.raises(ConfigError):
        SampleConfig(**fields)


def model_and_prompt() -> tuple[GPT, torch.Tensor]:
    torch.manual_seed(0)
    return GPT(tiny_config(block_size=16)).eval(), torch.randint(0, 64, (2, 5))


def test_same_seed_same_tokens() -> None:
    model, prompt = model_and_prompt()
    config = SampleConfig(max_new_tokens=30, temperature=1.0, top_k=10)

    def run(seed: int) -> list[list[int]]:
        gen = torch.Generator().manual_seed(seed)
        return torch.stack(list(generate(model, prompt, config, gen)), dim=1).tolist()

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_generation_never_feeds_more_than_block_size(monkeypatch: pytest.MonkeyPatch) -> None:
    model, prompt = model_and_prompt()
    lengths: list[int] = []
    forward = model.forward

    def spy(idx, kv_cache=None):
        lengths.append((kv_cache.pos if kv_cache else 0) + idx.size(1))
        return forward(idx, kv_cache)

    monkeypatch.setattr(model, "forward", spy)
    tokens = list(generate(model, prompt, SampleConfig(max_new_tokens=60, temperature=0.0)))
    assert len(tokens) == 60
    assert max(lengths) <= 16


def test_cached_greedy_matches_uncached_within_the_window() -> None:
    model, prompt = model_and_prompt()
    cached = torch.stack(
        list(generate(model, prompt, SampleConfig(max_new_tokens=10, temperature=0.0))), dim=1
    )
    idx = prompt
    with torch.no_grad():
        for _ in range(10):
            nxt = model(idx)[:, -1].argmax(-1, keepdim=True)
            idx = torch.cat((idx, nxt), dim=1)
    assert torch.equal(cached, idx[:, 5:])
