"""Continuous batching (minigpt.generation.batch): jobs decoded together give exactly
the tokens each gives alone, which are the tokens of the one generation path
(`generate_text`, what `minigpt sample` prints), whatever joins or leaves the batch;
and the per-row KV cache computes what a batch-1 cache does."""

from __future__ import annotations

import pytest
import torch

from minigpt.config import GPTConfig, SampleConfig
from minigpt.generation.batch import BatchDecoder, Job
from minigpt.generation.generate import generate_text
from minigpt.kvcache import KVCache, RowsKVCache
from minigpt.model import GPT
from minigpt.tokenizer.files import train_tokenizer
from tests.conftest import SHAKESPEARE

SHAPES = {
    "learned": dict(pos_encoding="learned", norm="layernorm", mlp="gelu"),
    "sinusoidal": dict(pos_encoding="sinusoidal", norm="layernorm", mlp="gelu", bias=True),
    "rope-gqa": dict(pos_encoding="rope", norm="rmsnorm", mlp="swiglu", n_kv_head=1),
}
# Requests unlike each other: greedy, seeded sampling with every filter, n > 1, penalties
# with a stop string, Korean; long enough (block 24) for every context window to slide.
REQUESTS = [
    ("To be", SampleConfig(max_new_tokens=40, temperature=1.0, seed=1)),
    ("안녕", SampleConfig(max_new_tokens=30, temperature=0.0)),
    ("First", SampleConfig(max_new_tokens=50, temperature=0.9, top_k=20, top_p=0.9, min_p=0.01,
                           seed=3, num_samples=3)),
    ("KING", SampleConfig(max_new_tokens=25, temperature=1.2, repetition_penalty=1.3,
                          presence_penalty=0.2, frequency_penalty=0.1, seed=5, stop=("\n",))),
]  # fmt: skip


@pytest.fixture(scope="module")
def tokenizer():
    text = SHAKESPEARE.read_text(encoding="utf-8")[:20_000] + " 안녕하세요 🙂 こんにちは"
    return train_tokenizer("bpe", text, 300)


def model(tokenizer, shape: str) -> GPT:
    torch.manual_seed(0)
    config = GPTConfig(vocab_size=tokenizer.vocab_size, block_size=24, n_layer=2, n_head=2,
                       n_embd=32, **SHAPES[shape])  # fmt: skip
    return GPT(config).eval()


def results(jobs: list[Job]) -> list[list[tuple[list[int], str, str | None]]]:
    return [
        [(c.ids, c.text, c.finish) for c in job.generation.completions]  # type: ignore[union-attr]
        for job in jobs
    ]


def decode(gpt: GPT, tokenizer, requests, max_rows: int = 8) -> list:
    decoder = BatchDecoder(gpt, tokenizer, max_rows)
    jobs = [decoder.submit(Job(tokenizer.encode(p), c)) for p, c in requests]
    while not decoder.idle:
        decoder.step()
    assert decoder.rows == 0
    return results(jobs)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_batched_equals_alone_equals_the_generation_path(tokenizer, shape: str) -> None:
    gpt = model(tokenizer, shape)
    path = []
    for prompt, config in REQUESTS:
        generation = generate_text(gpt, tokenizer, tokenizer.encode(prompt), config)
        list(generation)
        path.append([(c.ids, c.text, c.finish) for c in generation.completions])
    alone = [decode(gpt, tokenizer, [r])[0] for r in REQUESTS]
    together = decode(gpt, tokenizer, REQUESTS)
    queued = decode(gpt, tokenizer, REQUESTS, max_rows=3)  # jobs wait, then join mid-way
    assert alone == path
    assert together == path
    assert queued == path
    assert any(len(ids) > 24 for job in path for ids, _, _ in job)  # windows slid


def test_jobs_that_draw_alike_are_drawn_together_as_each_alone(tokenizer) -> None:
    """The server's common case: many requests with the same settings, other seeds,
    n and alternatives (drawn in one call, each row from its own generator)."""
    gpt = model(tokenizer, "rope-gqa")
    alike = [(p, SampleConfig(max_new_tokens=30, temperature=0.8, top_k=50, seed=s, num_samples=n))
             for p, s, n in (("To", 1, 1), ("A", 2, 2), ("안", 3, 1), ("O", 4, 3))]  # fmt: skip
    greedy = [(p, SampleConfig(max_new_tokens=20, temperature=0)) for p in ("To", "KING")]
    requests = alike + greedy
    decoder = BatchDecoder(gpt, tokenizer, 16)
    jobs = [
        decoder.submit(Job(tokenizer.encode(p), c, top=i % 3)) for i, (p, c) in enumerate(requests)
    ]
    while not decoder.idle:
        decoder.step()
    for i, (job, (prompt, config)) in enumerate(zip(jobs, requests, strict=True)):
        alone = generate_text(gpt, tokenizer, tokenizer.encode(prompt), config, top=i % 3)
        list(alone)
        for got, expected in zip(job.generation.completions, alone.completions, strict=True):  # type: ignore[union-attr]
            assert (got.ids, got.text) == (expected.ids, expected.text)
            assert [[i for i, _ in t] for t in got.top] == [[i for i, _ in t] for t in expected.top]
            got_lp = [lp for t in got.top for _, lp in t]  # batched: rounding may differ
            assert got_lp == pytest.approx([lp for t in expected.top for _, lp in t], abs=1e-5)


def test_rows_at_different_positions_compute_what_each_computes_alone(tokenizer) -> None:
    gpt = model(tokenizer, "rope-gqa")
    prompts = [torch.randint(0, 300, (1, n), generator=torch.Generator().manual_seed(n))
               for n in (3, 7, 1)]  # fmt: skip
    tokens = torch.randint(0, 300, (3, 4), generator=torch.Generator().manual_seed(9))
    cache = RowsKVCache(gpt.config, 4)
    with torch.no_grad():
        for i, prompt in enumerate(prompts):
            gpt(prompt, kv_cache=cache.view(i))
            cache.set_length(i, prompt.size(1))
        cache.rows = 3
        batched = [gpt(tokens[:, s : s + 1], kv_cache=cache)[:, -1] for s in range(4)]
        assert cache.lengths[:3].tolist() == [7, 11, 5]
        for i, prompt in enumerate(prompts):
            alone = KVCache(gpt.config, 1)
            gpt(prompt, kv_cache=alone)
            for s in range(4):
                expected = gpt(tokens[i : i + 1, s : s + 1], kv_cache=alone)[0, -1]
                torch.testing.assert_close(batched[s][i], expected, rtol=1e-5, atol=1e-5)


def test_a_cancelled_job_frees_its_rows_and_the_others_go_on_unchanged(tokenizer) -> None:
    gpt = model(tokenizer, "learned")
    expected = decode(gpt, tokenizer, REQUESTS[:1] + REQUESTS[2:])
    decoder = BatchDecoder(gpt, tokenizer, 8)
    jobs = [decoder.submit(Job(tokenizer.encode(p), c)) for p, c in REQUESTS]
    for _ in range(5):
        decoder.step()
    assert decoder.rows == 6
    decoder.cancel(jobs[1])
    updates = decoder.step()
    assert [u.done for u in updates if u.job is jobs[1]] == [True]
    assert decoder.rows == 5  # its row is free, the rows after it moved up
    while not decoder.idle:
        decoder.step()
    kept = [jobs[0], jobs[2], jobs[3]]
    assert results(kept) == expected
    assert len(jobs[1].generation.completions[0].ids) == 5  # type: ignore[union-attr]


def test_zero_new_tokens_and_a_bad_job_are_handled(tokenizer) -> None:
    gpt = model(tokenizer, "learned")
    decoder = BatchDecoder(gpt, tokenizer, 2)
    job = decoder.submit(Job(tokenizer.encode("a"), SampleConfig(max_new_tokens=0)))
    updates = decoder.step()
    assert [(u.job, u.done) for u in updates] == [(job, True)] and decoder.idle
    assert job.generation.completions[0].finish == "limit"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="1..2 sequences"):
        decoder.submit(Job([1], SampleConfig(num_samples=3)))
    with pytest.raises(ValueError, match="prompt id"):
        decoder.submit(Job([], SampleConfig()))
