"""The numbers `minigpt inspect` shows (minigpt.inspect), checked against the model's own
weights recomputed by hand, for every position type, tokenizer and tied or untied."""

from __future__ import annotations

import math
from collections import Counter

import pytest
import torch
import torch.nn.functional as F

from minigpt.config import SampleConfig
from minigpt.errors import ConfigError
from minigpt.generation.sampling import sample_next_token
from minigpt.generation.utf8 import build_tables
from minigpt.inspect.attention import attention_lists, head_stages
from minigpt.inspect.embeddings import analogy, nearest, parse_analogy, projection, single_token
from minigpt.inspect.forward import trace_prompt
from minigpt.inspect.lens import lens_logits, logit_lens
from minigpt.inspect.nextdist import next_distribution
from minigpt.inspect.positions import (
    cosine_matrix,
    position_shifts,
    position_table,
    rope_view,
    sinusoidal_similarity,
)
from minigpt.inspect.surprise import surprise
from minigpt.inspect.weights import CATEGORIES, weight_report
from minigpt.model import GPT
from minigpt.parameters import count_parameters
from minigpt.positional import apply_rope
from minigpt.tokenizer.encodings import CharTokenizer
from minigpt.tokenizer.files import train_tokenizer
from tests.conftest import tiny_config

TEXT = "To be, or not to be, that is the question: 한국어와 日本語 🙂🙂\n"
PROMPT = "To be, or not to be"
POSITIONS = ("rope", "learned", "sinusoidal")


def make(
    pos: str,
    tokenizer: str = "char",
    tie: bool = True,
    bias: bool = False,
    seed: int = 0,
    n_kv_head: int | None = None,
):
    """A random tiny model (4 heads; n_kv_head key/value heads) and its tokenizer."""
    tok = (
        CharTokenizer.from_text(TEXT)
        if tokenizer == "char"
        else train_tokenizer(tokenizer, TEXT * 3, 300 if tokenizer == "bpe" else None)
    )
    torch.manual_seed(seed)
    config = tiny_config(
        vocab_size=tok.vocab_size, pos_encoding=pos, tie_embeddings=tie, bias=bias, n_head=4,
        n_kv_head=n_kv_head,
    )  # fmt: skip
    return GPT(config).eval(), tok


@pytest.mark.parametrize("n_kv_head", [None, 2], ids=["mha", "gqa"])
@pytest.mark.parametrize("pos", POSITIONS)
@pytest.mark.parametrize("tokenizer", ["char", "bpe", "gpt2"])
def test_captured_attention_is_softmax_of_scaled_masked_scores(
    pos: str, tokenizer: str, n_kv_head: int | None
) -> None:
    model, tok = make(pos, tokenizer, bias=tokenizer == "gpt2", n_kv_head=n_kv_head)
    traced = trace_prompt(model, tok, PROMPT + " 한국어")
    expected = _reference_attention(model, traced.ids)
    for layer, weights in enumerate(traced.trace.attention):
        torch.testing.assert_close(weights, expected[layer], atol=1e-5, rtol=1e-4)
        T = weights.size(-1)
        torch.testing.assert_close(weights.sum(-1), torch.ones(weights.size(0), T))
        assert bool((weights.triu(1) == 0).all())
    stages = head_stages(traced, layer=1, head=2)
    future = torch.ones_like(stages.masked, dtype=torch.bool).triu(1)
    assert bool(torch.isneginf(stages.masked[future]).all())
    assert bool(torch.isfinite(stages.masked[~future]).all())
    torch.testing.assert_close(stages.scaled, stages.scores / math.sqrt(stages.d_k))
    torch.testing.assert_close(torch.softmax(stages.masked, -1), stages.softmax)
    assert len(attention_lists(traced)[1][2]) == len(traced.ids)


def _reference_attention(model: GPT, ids: list[int]) -> list[torch.Tensor]:
    """Attention weights per layer, from the weights: the residual stream is carried by
    the model's own blocks, the scores are recomputed from c_attn by hand. c_attn's rows
    are [Q (n_embd); K (kv); V (kv)], kv = kv_heads * hs; with grouped-query attention
    query head h reads key head h // (n_head / kv_heads)."""
    c = model.config
    T, hs = len(ids), c.head_size
    kv, group = c.kv_heads * hs, c.n_head // c.kv_heads
    x = model.wte.weight[ids]
    rope = None
    if c.pos_encoding == "learned":
        x = x + model.wpe.weight[:T]
    elif c.pos_encoding == "sinusoidal":
        x = x * math.sqrt(c.n_embd) + model.sinusoidal[:T]
    else:
        rope = (model.rope_cos[:T], model.rope_sin[:T])
    out = []
    with torch.no_grad():
        for layer, block in enumerate(model.h):
            h = block.ln_1(x)
            qkv = F.linear(h, block.attn.c_attn.weight, block.attn.c_attn.bias)
            q, k, _ = qkv.split((c.n_embd, kv, kv), -1)
            q = q.view(T, c.n_head, hs).transpose(0, 1)  # (nh, T, hs)
            k = k.view(T, c.kv_heads, hs).transpose(0, 1)  # (nkv, T, hs)
            k = torch.stack([k[h // group] for h in range(c.n_head)])  # (nh, T, hs)
            if rope is not None:
                q, k = apply_rope(q, *rope), apply_rope(k, *rope)
            mask = torch.full((T, T), float("-inf")).triu(1)
            out.append(torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hs) + mask, dim=-1))
            x = block(x.unsqueeze(0), rope, None, layer)[0]
    return out


@pytest.mark.parametrize("pos", POSITIONS)
@pytest.mark.parametrize("tie", [True, False])
def test_inspecting_leaves_the_logits_unchanged_and_the_lens_ends_on_them(
    pos: str, tie: bool
) -> None:
    model, tok = make(pos, tie=tie)
    traced = trace_prompt(model, tok, PROMPT)
    with torch.no_grad():
        plain = model(torch.tensor([traced.ids]))[0]
    torch.testing.assert_close(traced.logits, plain, atol=1e-5, rtol=1e-5)
    lens = lens_logits(model, traced)
    assert lens.size(0) == model.config.n_layer + 1
    torch.testing.assert_close(lens[-1], plain, atol=1e-5, rtol=1e-5)
    rows = logit_lens(model, tok, traced, k=2)
    assert [r.name for r in rows] == ["embedding", "layer 1", "layer 2"]
    assert rows[-1].ids[-1][0] == int(plain[-1].argmax())
    assert rows[-1].probs[-1][0] == pytest.approx(float(torch.softmax(plain[-1], -1).max()))


@pytest.mark.parametrize("n_kv_head", [None, 1], ids=["mha", "mqa"])
@pytest.mark.parametrize("pos", POSITIONS)
@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_weight_categories_sum_to_the_parameter_count(
    pos: str, tie: bool, bias: bool, n_kv_head: int | None
) -> None:
    model, _ = make(pos, tie=tie, bias=bias, n_kv_head=n_kv_head)
    report = weight_report(model)
    total = sum(count_parameters(model).values())
    assert report.total == total == sum(p.numel() for p in model.parameters())
    assert sum(r.stats.count for r in report.categories) == total
    assert sum(r.share for r in report.categories) == pytest.approx(1.0)
    counts = {r.category: r.stats.count for r in report.categories}
    assert [r.category for r in report.categories] == list(CATEGORIES)
    assert (counts["unembedding"] == 0) == tie
    assert (counts["positions"] > 0) == (pos == "learned")
    assert (counts["biases"] > 0) == bias
    c = model.config
    assert counts["query"] == c.n_layer * c.n_embd**2
    assert counts["key"] == counts["value"] == c.n_layer * c.n_embd * c.kv_heads * c.head_size
    per_layer = [r for r in report.layers if r.layer == 0 and r.category == "query"]
    q = model.h[0].attn.c_attn.weight[: c.n_embd].detach()
    assert per_layer[0].stats.rms == pytest.approx(float(q.square().mean().sqrt()), rel=1e-5)
    assert per_layer[0].stats.max == pytest.approx(float(q.max()))


def test_sinusoidal_similarity_is_its_closed_form() -> None:
    model, _ = make("sinusoidal")
    table = position_table(model)
    n, dim = table.shape
    torch.testing.assert_close(
        cosine_matrix(table), sinusoidal_similarity(n, dim), atol=1e-5, rtol=1e-5
    )
    # Nearer positions are more alike: similarity falls from the diagonal at first.
    sim = sinusoidal_similarity(n, dim)
    assert sim[0, 0] == pytest.approx(1.0) and sim[0, 1] > sim[0, 2] > sim[0, 4]


def test_rope_view_comes_from_the_models_rotation() -> None:
    model, _ = make("rope")
    view = rope_view(model)
    hs = model.config.head_size
    theta = model.config.rope_theta
    expected = [theta ** (-2 * i / hs) for i in range(hs // 2)]
    assert view.frequencies == pytest.approx(expected, rel=1e-5)
    assert view.wavelengths[0] == pytest.approx(2 * math.pi)
    # Unit query and key: 2 * sum_i cos(d * w_i) / hs; 1 at distance 0.
    for d in (0, 1, 5):
        closed = 2 * sum(math.cos(d * w) for w in expected) / hs
        assert view.scores[d] == pytest.approx(closed, abs=1e-4)
    assert view.scores[0] == pytest.approx(1.0)
    assert rope_view(make("learned")[0]) is None


@pytest.mark.parametrize("pos", ["learned", "sinusoidal"])
def test_adding_a_position_is_checked_against_the_whole_vocabulary(pos: str) -> None:
    model, tok = make(pos)
    with torch.no_grad():  # plant a position vector that is exactly token "q"'s direction
        target = tok.encode("q")[0]
        scale = math.sqrt(model.config.n_embd) if pos == "sinusoidal" else 1.0
        if pos == "learned":
            model.wpe.weight[3] = model.wte.weight[target] * 100
    shifts = position_shifts(model, tok, "To be")
    assert [s.position for s in shifts] == list(range(5))
    assert [s.label for s in shifts] == ["T", "o", " ", "b", "e"]
    for s in shifts:
        assert -1.0 <= s.own_cosine <= s.cosine <= 1.0 + 1e-6
    if pos == "learned":
        assert shifts[3].nearest_label == "q" and shifts[3].changed
    # The nearest token is the best cosine over the vocabulary, recomputed here.
    ids = tok.encode("To be")
    table = position_table(model)
    inputs = model.wte.weight[ids].detach() * scale + table[:5]
    sims = F.normalize(inputs, dim=-1) @ F.normalize(model.wte.weight.detach() * scale, dim=-1).T
    assert [s.nearest_id for s in shifts] == sims.argmax(-1).tolist()
    assert position_shifts(make("rope")[0], tok, "To be") is None


def test_an_analogy_on_planted_embeddings_returns_the_planted_answer() -> None:
    model, tok = make("rope")
    king, man, woman, queen = (tok.encode(c)[0] for c in "qusn")
    with torch.no_grad():
        wte = model.wte.weight
        wte.mul_(0.01)
        royal, male, female = torch.eye(wte.size(1))[:3] * 5
        wte[king], wte[man] = royal + male, male
        wte[woman], wte[queen] = female, royal + female
    answers = analogy(model, tok, "q - u + s", k=3)
    assert answers[0].label == "n" and answers[0].cosine > 0.9
    assert {a.id for a in answers}.isdisjoint({king, man, woman})
    near = nearest(model, tok, "'q'", k=2)
    assert {n.label for n in near} == {"n", "u"}  # each shares one of q's two directions
    assert near[0].cosine == pytest.approx(math.sqrt(0.5), abs=0.02)
    assert parse_analogy("a - b + c") == [(1, "a"), (-1, "b"), (1, "c")]
    with pytest.raises(ConfigError, match="king - man"):
        parse_analogy("a b")
    with pytest.raises(ConfigError, match="2 tokens"):
        single_token(tok, "To")


def test_projection_spans_the_two_main_directions() -> None:
    model, tok = make("rope")
    proj = projection(model, tok, count=10)
    assert len(proj.points) == len(proj.labels) == 10
    assert proj.explained[0] >= proj.explained[1] > 0
    assert sum(proj.explained) <= 1.0


@pytest.mark.parametrize("tokenizer", ["char", "bpe"])
def test_next_distribution_is_what_the_sampler_draws_from(tokenizer: str) -> None:
    model, tok = make("rope", tokenizer, seed=3)
    config = SampleConfig(top_k=20, top_p=0.9, min_p=0.05)
    view = next_distribution(model, tok, PROMPT, [0.0, 0.7, 1.5], config)
    greedy, warm, hot = view.temperatures
    assert greedy.kept == 1 and float(greedy.probs.max()) == 1.0
    assert int(greedy.probs.argmax()) == view.top_ids[0]
    assert hot.entropy_bits > warm.entropy_bits
    assert warm.kept <= min(warm.kept_by.values())
    # Draw from the sampler itself: every draw is a kept token, at the shown frequencies.
    with torch.no_grad():
        logits = model(torch.tensor([tok.encode(PROMPT)]))[:, -1]
    tables = build_tables(tok, logits.size(-1))  # the UTF-8 mask `sample` applies
    blocked = tables.rows(1).blocked() if tables is not None else None
    g = torch.Generator().manual_seed(0)
    n = 3000
    draws = Counter(
        int(sample_next_token(logits, SampleConfig(temperature=0.7, top_k=20, top_p=0.9,
                                                   min_p=0.05), g, tok.vocab_size,
                              blocked=blocked))
        for _ in range(n)
    )  # fmt: skip
    kept = set(torch.nonzero(warm.probs).flatten().tolist())
    assert set(draws) <= kept
    for token, count in draws.most_common(3):
        assert count / n == pytest.approx(float(warm.probs[token]), abs=0.04)


@pytest.mark.parametrize("pos", POSITIONS)
def test_surprise_scores_each_token_with_the_models_loss(pos: str) -> None:
    model, tok = make(pos)
    text = (TEXT * 2)[: model.config.block_size * 2 + 5]  # longer than the context
    result = surprise(model, tok, text)
    assert result.bits[0] is None and all(b is not None and b > 0 for b in result.bits[1:])
    ids = tok.encode(text)
    with torch.no_grad():  # the first window's losses, by the model directly
        logits = model(torch.tensor([ids[: model.config.block_size]]))[0]
    logp = torch.log_softmax(logits, -1)
    for t in (1, 7, model.config.block_size - 1):
        assert result.bits[t] == pytest.approx(-float(logp[t - 1, ids[t]]) / math.log(2), rel=1e-4)
    n_bytes = len(text.encode()) - len(text[0].encode())
    assert result.scored_bytes == n_bytes
    assert result.bits_per_byte == pytest.approx(sum(result.bits[1:]) / n_bytes)


def test_a_prompt_longer_than_the_context_is_refused_in_one_line() -> None:
    model, tok = make("rope")
    with pytest.raises(ConfigError, match="more than the model's context of 32"):
        trace_prompt(model, tok, "a" * 40)
    with pytest.raises(ConfigError, match="empty"):
        trace_prompt(model, tok, "")
