"""The sampler: each filter, the order they apply in, penalties, edges, seeds."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.config import SampleConfig
from minigpt.errors import ConfigError, GenerationError
from minigpt.generation.sampling import (
    apply_penalties,
    apply_temperature,
    draw,
    mask_padded_ids,
    min_p_filter,
    sample_next_token,
    top_k_filter,
    top_p_filter,
)


def test_top_k_keeps_exactly_k_even_with_ties() -> None:
    logits = torch.tensor([[1.0, 3.0, 3.0, 3.0, 0.0]])
    kept = torch.isfinite(top_k_filter(logits, 2))
    assert kept.sum().item() == 2
    assert top_k_filter(logits, 10) is logits


def test_top_k_ties_go_to_the_lower_id() -> None:
    logits = torch.tensor([[0.0, 1.0, 1.0, 1.0, 1.0, 0.0]])
    assert torch.isfinite(top_k_filter(logits, 2)).tolist() == [[False, True, True] + [False] * 3]


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
     dict(top_k=0), dict(top_p=0.0), dict(top_p=float("nan")), dict(num_samples=0),
     dict(top_p=1.5), dict(min_p=-0.1), dict(min_p=float("nan")), dict(min_p=2.0),
     dict(repetition_penalty=0.0), dict(repetition_penalty=float("inf")),
     dict(presence_penalty=float("nan")), dict(frequency_penalty=float("-inf")),
     dict(penalty_window=0), dict(stop=("",)), dict(temperature=float("inf")),
     dict(top_k=True), dict(stop=("x", 1)), dict(seed=2**63), dict(seed=-1),
     dict(repetition_penalty=101.0), dict(presence_penalty=1e39),
     dict(frequency_penalty=-101.0), dict(penalty_window=2**21)],
)  # fmt: skip
def test_bad_sampling_options(fields: dict) -> None:
    with pytest.raises(ConfigError):
        SampleConfig(**fields)


def test_min_p_keeps_tokens_near_the_top() -> None:
    probs = torch.tensor([[0.5, 0.3, 0.15, 0.05]])
    kept = torch.isfinite(min_p_filter(probs.log(), 0.2))  # floor 0.1
    assert kept.tolist() == [[True, True, True, False]]
    assert torch.isfinite(min_p_filter(probs.log(), 1.0)).sum() == 1  # only the top
    assert torch.equal(min_p_filter(probs.log(), 0.0), probs.log())


def test_penalties_touch_only_the_window() -> None:
    logits = torch.tensor([[2.0, -2.0, 1.0, 0.5]])
    recent = torch.tensor([[0, 1, 0]])  # id 0 twice, id 1 once
    rep = apply_penalties(logits, recent, SampleConfig(repetition_penalty=2.0))
    assert rep.tolist() == [[1.0, -4.0, 1.0, 0.5]]  # positive divided, negative multiplied
    pres = apply_penalties(logits, recent, SampleConfig(presence_penalty=0.5))
    assert pres.tolist() == [[1.5, -2.5, 1.0, 0.5]]
    freq = apply_penalties(logits, recent, SampleConfig(frequency_penalty=0.5))
    assert freq.tolist() == [[1.0, -2.5, 1.0, 0.5]]


@pytest.mark.parametrize(
    "penalties",
    [dict(presence_penalty=100.0), dict(presence_penalty=-100.0), dict(frequency_penalty=100.0),
     dict(frequency_penalty=-100.0), dict(repetition_penalty=100.0),
     dict(repetition_penalty=0.01)],
)  # fmt: skip
def test_extreme_penalties_on_extreme_logits_never_give_nan(penalties: dict) -> None:
    big = torch.finfo(torch.float32).max
    logits = torch.tensor([[big, -big, 1e30, -1e30, 0.0], [3e38, 3e38, 3e38, 3e38, 3e38]])
    recent = torch.tensor([[0, 1, 2, 3, 4] * 4, [0, 1, 2, 3, 4] * 4])  # every id seen
    for temperature in (0.0, 1e-8, 1.0, 1e6):
        config = SampleConfig(temperature=temperature, **penalties)
        out = sample_next_token(logits, config, torch.Generator().manual_seed(0), recent=recent)
        assert ((0 <= out) & (out < 5)).all()


def test_penalty_window_limits_what_is_seen() -> None:
    logits = torch.tensor([[5.0, 4.9, 0.0]])
    config = SampleConfig(temperature=0.0, presence_penalty=1.0, penalty_window=2)
    # id 0 is outside the last 2 tokens: not penalised, stays the argmax
    assert sample_next_token(logits, config, recent=torch.tensor([[0, 2, 2]])).item() == 0
    assert sample_next_token(logits, config, recent=torch.tensor([[2, 2, 0]])).item() == 1


def test_order_penalty_before_temperature_before_filters() -> None:
    """A penalty can change which token top-k 1 keeps: penalties come first."""
    logits = torch.tensor([[3.0, 2.0, -1.0]])
    config = SampleConfig(temperature=1.0, top_k=1, repetition_penalty=4.0)
    drawn = sample_next_token(logits, config, recent=torch.tensor([[0]]))
    assert drawn.item() == 1  # 3/4 < 2: id 1 is now the top


def test_top_k_then_top_p_then_min_p() -> None:
    """top-p sees the distribution renormalised over the top-k survivors."""
    probs = torch.tensor([[0.4, 0.3, 0.2, 0.1]])
    config = SampleConfig(temperature=1.0, top_k=2, top_p=0.5)
    gen = torch.Generator().manual_seed(0)
    draws = sample_next_token(probs.log().expand(2000, 4), config, gen)
    # after top-k 2: 0.57 / 0.43, so top-p 0.5 keeps only id 0
    assert set(draws.tolist()) == {0}


@pytest.mark.parametrize("temperature", [1e-8, 1e-3, 1.0, 1e6])
def test_extreme_temperatures_stay_finite(temperature: float) -> None:
    logits = torch.tensor([[1e30, -1e30, 0.0, 5.0], [3.0, 3.0, float("-inf"), 2.0]])
    scaled = apply_temperature(logits, temperature)
    probs = torch.softmax(scaled, dim=-1)
    assert not torch.isnan(probs).any()
    gen = torch.Generator().manual_seed(0)
    out = sample_next_token(logits, SampleConfig(temperature=temperature), gen)
    assert out[1].item() != 2  # -inf is never drawn


def test_tiny_temperature_is_almost_greedy() -> None:
    logits = torch.randn(500, 40)
    out = sample_next_token(logits, SampleConfig(temperature=1e-8), torch.Generator())
    assert torch.equal(out, logits.argmax(-1))


def test_nan_logits_count_as_minus_infinity_and_all_nan_is_an_error() -> None:
    logits = torch.tensor([[float("nan"), 1.0, float("nan")]])
    out = sample_next_token(logits, SampleConfig(temperature=1.0), torch.Generator())
    assert out.item() == 1
    with pytest.raises(GenerationError, match="no finite logits"):
        sample_next_token(torch.full((1, 3), float("nan")), SampleConfig())


def test_top_p_smaller_than_the_top_token_keeps_one() -> None:
    logits = torch.tensor([[0.0, 0.0, 0.0]])  # uniform: top token has 1/3 < p
    kept = torch.isfinite(top_p_filter(logits, 1e-9))
    assert kept.sum().item() == 1


@settings(max_examples=150, deadline=None)
@given(
    logits=st.lists(
        st.floats(allow_nan=False, allow_infinity=False, width=32),
        min_size=2,
        max_size=40,
    ),
    temperature=st.sampled_from([0.0, 1e-8, 0.5, 1.0, 3.0, 1e6]),
    top_k=st.none() | st.integers(1, 50),
    top_p=st.none() | st.floats(1e-9, 1.0),
    min_p=st.none() | st.floats(0.0, 1.0),
    penalty=st.floats(0.01, 100.0),
    presence=st.floats(-100.0, 100.0),
    valid=st.integers(1, 40),
    seed=st.integers(0, 2**31),
)
def test_any_finite_logits_and_valid_options_give_a_valid_id(
    logits: list[float], temperature: float, top_k: int | None, top_p: float | None,
    min_p: float | None, penalty: float, presence: float, valid: int, seed: int,
) -> None:  # fmt: skip
    row = torch.tensor([logits])
    config = SampleConfig(
        temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p,
        repetition_penalty=penalty, presence_penalty=presence, frequency_penalty=presence / 3,
    )  # fmt: skip
    recent = torch.randint(0, row.size(1), (1, 8), generator=torch.Generator().manual_seed(seed))
    valid_vocab = min(valid, row.size(1))
    gen = torch.Generator().manual_seed(seed)
    out = sample_next_token(row, config, gen, valid_vocab=valid_vocab, recent=recent)
    assert 0 <= out.item() < valid_vocab


def test_draw_gives_each_token_its_probability_in_the_distribution_drawn_from() -> None:
    """What `sample --show-probs` calls p drawn: after temperature and filters, not
    the model's own probability (the two differ at T != 1 or with a filter)."""
    logits = torch.tensor([[2.0, 1.0, 0.0, -1.0]]).expand(4, 4)
    gen = torch.Generator().manual_seed(0)
    for config, expected in [
        (SampleConfig(temperature=1.0), torch.softmax(logits, dim=-1)),
        (SampleConfig(temperature=1.5), torch.softmax(logits / 1.5, dim=-1)),
        (SampleConfig(temperature=1.0, top_k=2), torch.softmax(logits[:, :2], dim=-1)),
    ]:
        token, p = draw(logits, config, gen, None)
        torch.testing.assert_close(p, expected.gather(-1, token.unsqueeze(-1)).squeeze(-1))
    greedy, p = draw(logits, SampleConfig(temperature=0.0), gen, None)
    assert greedy.tolist() == [0] * 4 and p.tolist() == [1.0] * 4
    assert draw(logits, SampleConfig(top_k=1), gen, None)[1].tolist() == [1.0] * 4
