"""Generation: cached == uncached, the sliding window, shared prefill, packed CPU
weights, streaming text with stop strings, steps -> text chunks for n sequences."""

import re
from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch

from minigpt.config import MAX_BATCH, SampleConfig
from minigpt.errors import GenerationError
from minigpt.generation.context import ModelContext
from minigpt.generation.generate import Step, TextGeneration, generate, generate_text
from minigpt.generation.inference import PackedLinear, prepare_for_inference
from minigpt.generation.memory import Available, Plan, check_fits, estimate, record_bytes
from minigpt.generation.text import TextStream
from minigpt.model import GPT
from minigpt.tokenizer.encodings import CharTokenizer, TiktokenTokenizer, Tokenizer
from minigpt.tuning import Decision
from tests.conftest import tiny_config

POSITIONS = ["learned", "sinusoidal", "rope"]


def tiny_model(pos: str, block_size: int = 16, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(tiny_config(pos_encoding=pos, block_size=block_size)).eval()


def tokens(model: GPT, prompt: torch.Tensor, config: SampleConfig, **kw) -> list[list[int]]:
    gen = torch.Generator().manual_seed(config.seed)
    steps = generate(model, prompt, config, gen, **kw)
    return torch.stack([s.token for s in steps], dim=1).tolist()


def naive_greedy(model: GPT, prompt: torch.Tensor, n: int) -> list[list[int]]:
    """The textbook loop: run the whole sequence, take the argmax, append."""
    idx = prompt
    with torch.no_grad():
        for _ in range(n):
            nxt = model(idx)[:, -1].argmax(-1, keepdim=True)
            idx = torch.cat((idx, nxt), dim=1)
    return idx[:, prompt.size(1) :].tolist()


@pytest.mark.parametrize("pos", POSITIONS)
def test_cached_greedy_equals_the_textbook_loop_within_the_window(pos: str) -> None:
    model = tiny_model(pos, block_size=32)
    prompt = torch.randint(0, 64, (3, 5))
    greedy = SampleConfig(max_new_tokens=27, temperature=0.0)
    assert tokens(model, prompt, greedy) == naive_greedy(model, prompt, 27)


@pytest.mark.parametrize("pos", POSITIONS)
@pytest.mark.parametrize("packed", [False, True], ids=["default", "packed"])
def test_cached_equals_uncached_past_the_window(pos: str, packed: bool) -> None:
    """60 tokens through a 16-token window slide it several times; same tokens."""
    model = tiny_model(pos)
    if packed:
        prepare_for_inference(model, "packed")
    prompt = torch.randint(0, 64, (2, 5))
    for config in (
        SampleConfig(max_new_tokens=60, temperature=0.0),
        SampleConfig(max_new_tokens=60, temperature=1.0, top_k=20, seed=3),
        SampleConfig(max_new_tokens=60, temperature=0.9, repetition_penalty=1.3, min_p=0.05),
    ):
        cached = tokens(model, prompt, config)
        assert cached == tokens(model, prompt, config, use_cache=False)
        assert len(cached[0]) == 60


def test_a_long_prompt_keeps_its_last_window() -> None:
    model = tiny_model("learned")
    prompt = torch.randint(0, 64, (1, 40))  # longer than the 16-token window
    greedy = SampleConfig(max_new_tokens=1, temperature=0.0)
    assert tokens(model, prompt, greedy) == naive_greedy(model, prompt[:, -16:], 1)


@pytest.mark.parametrize("pos", POSITIONS)
def test_the_model_never_sees_more_than_block_size(pos: str, monkeypatch) -> None:
    model = tiny_model(pos)
    seen: list[int] = []
    forward = model.forward

    def spy(idx, kv_cache=None, last_only=False):
        seen.append((kv_cache.pos if kv_cache is not None else 0) + idx.size(1))
        return forward(idx, kv_cache, last_only)

    monkeypatch.setattr(model, "forward", spy)
    prompt = torch.randint(0, 64, (1, 30))
    for use_cache in (True, False):
        out = tokens(model, prompt, SampleConfig(max_new_tokens=50), use_cache=use_cache)
        assert len(out[0]) == 50
    assert max(seen) == 16


def test_sliding_keeps_the_pinned_prefix_and_half_a_window() -> None:
    model = tiny_model("learned")
    context = ModelContext(model, pinned=4)
    ids = torch.arange(16).unsqueeze(0)
    context.feed(ids)
    context.feed(torch.tensor([[40]]))  # one too many: slide
    kept = context.tokens[0].tolist()
    assert kept[:4] == [0, 1, 2, 3]  # the pinned prefix stays
    assert kept[4:] == [*range(11, 16), 40]  # the newest half of the other 12
    assert context.slides == 1 and context.cache is not None and context.cache.pos == 10
    logits = context.feed(torch.tensor([[41]]))
    with torch.no_grad():
        fresh = model(context.tokens)[:, -1]  # a fresh run over the kept tokens
    torch.testing.assert_close(logits, fresh, rtol=1e-5, atol=1e-5)


def test_sync_runs_only_what_is_new() -> None:
    model = tiny_model("rope", block_size=32)
    context = ModelContext(model)
    context.sync([1, 2, 3, 4, 5])
    assert context.prefilled == 5
    logits = context.sync([1, 2, 3, 4, 5, 6, 7])
    assert context.prefilled == 7  # only 6 and 7 ran
    fresh = ModelContext(model).sync([1, 2, 3, 4, 5, 6, 7])
    torch.testing.assert_close(logits, fresh, rtol=1e-5, atol=1e-5)
    context.sync([1, 2, 9])  # diverges after 2: 9 runs on the kept prefix
    assert context.tokens[0].tolist() == [1, 2, 9] and context.prefilled == 8
    context.sync([1, 2, 9])  # nothing new: the last id runs again for its logits
    assert context.prefilled == 9


def test_num_samples_share_one_prefill(monkeypatch) -> None:
    model = tiny_model("learned", block_size=32)
    batches: list[tuple[int, int]] = []
    forward = model.forward

    def spy(idx, kv_cache=None, last_only=False):
        batches.append(tuple(idx.shape))
        return forward(idx, kv_cache, last_only)

    monkeypatch.setattr(model, "forward", spy)
    prompt = torch.randint(0, 64, (1, 10))
    config = SampleConfig(max_new_tokens=5, temperature=1.0, num_samples=4)
    out = tokens(model, prompt, config)
    assert batches[0] == (1, 10)  # the prompt ran once, for one row
    assert all(shape == (4, 1) for shape in batches[1:])
    assert len(out) == 4 and len({tuple(row) for row in out}) > 1  # they differ


def test_prompts_generate_cannot_use_are_refused() -> None:
    model = tiny_model("learned")
    with pytest.raises(ValueError, match="at least one token"):
        next(generate(model, torch.zeros(1, 0, dtype=torch.long), SampleConfig()))
    with pytest.raises(ValueError, match="one-row prompt"):
        next(generate(model, torch.zeros(2, 3, dtype=torch.long), SampleConfig(num_samples=3)))


def test_decoding_records_no_autograd_graph() -> None:
    model = tiny_model("rope")
    assert all(p.requires_grad for p in model.parameters())  # as a library user has it
    context = ModelContext(model)
    context.sync([1, 2, 3])
    context.feed(torch.tensor([[4]]))
    assert context.cache is not None and not context.cache.k.requires_grad


def test_same_seed_same_tokens() -> None:
    model = tiny_model("rope")
    prompt = torch.randint(0, 64, (2, 5))
    config = SampleConfig(max_new_tokens=30, temperature=1.0, top_k=10)
    assert tokens(model, prompt, config) == tokens(model, prompt, config)
    other = SampleConfig(max_new_tokens=30, temperature=1.0, top_k=10, seed=2)
    assert tokens(model, prompt, config) != tokens(model, prompt, other)


def test_padded_ids_are_never_generated() -> None:
    model = tiny_model("learned")
    with torch.no_grad():
        model.lm_head.weight[50:] = 0.0
        model.lm_head.weight[50:, 0] = 100.0  # padding rows that look very likely
    prompt = torch.randint(0, 50, (4, 3))
    out = tokens(model, prompt, SampleConfig(max_new_tokens=40, temperature=1.0), valid_vocab=50)
    assert max(max(row) for row in out) < 50


def test_steps_carry_the_models_log_probabilities() -> None:
    model = tiny_model("learned")
    prompt = torch.randint(0, 64, (1, 5))
    steps = list(generate(model, prompt, SampleConfig(max_new_tokens=3, temperature=0.0), top=4))
    with torch.no_grad():
        first = torch.log_softmax(model(prompt)[0, -1], dim=-1)
    assert steps[0].top_ids is not None and steps[0].top_logprobs is not None
    assert steps[0].top_ids[0, 0] == steps[0].token[0] == first.argmax()
    torch.testing.assert_close(steps[0].logprob[0], first.max())
    assert (steps[0].top_logprobs[0].diff() <= 0).all()


def test_steps_carry_the_samplers_probability_beside_the_models() -> None:
    model = tiny_model("learned")
    prompt = torch.randint(0, 64, (1, 5))
    config = SampleConfig(max_new_tokens=1, temperature=2.0)
    step = next(iter(generate(model, prompt, config, torch.Generator().manual_seed(0))))
    with torch.no_grad():
        logits = model(prompt)[0, -1]
    token = step.token[0]
    assert step.sampled_logprob is not None
    torch.testing.assert_close(step.logprob[0], torch.log_softmax(logits, -1)[token])
    torch.testing.assert_close(step.sampled_logprob[0], torch.log_softmax(logits / 2, -1)[token])


def test_completions_and_their_record_keep_both_probabilities() -> None:
    model = tiny_model("rope", block_size=32)
    tok = CharTokenizer.from_text("".join(chr(ord("0") + i) for i in range(64)))
    config = SampleConfig(max_new_tokens=6, temperature=1.5, top_k=1)
    generation = generate_text(model, tok, tok.encode("hi"), config)
    chunks = [c for c in generation if c.token is not None]
    assert [c.sampled_prob for c in chunks] == [1.0] * 6  # top-k 1: certain
    assert all(c.prob < 1.0 for c in chunks)  # the model was not
    sample = generation.record("hi", tok.encode("hi"), config)["samples"][0]
    assert sample["sampled_logprobs"] == [0.0] * 6
    assert sample["logprobs"] == [round(c.logprob, 6) for c in chunks]


def test_packed_weights_compute_the_same_function() -> None:
    model = tiny_model("rope")
    idx = torch.randint(0, 64, (2, 12))
    with torch.no_grad():
        before = model(idx)
    assert prepare_for_inference(model, "packed") == Decision("packed", "as asked")
    assert any(isinstance(m, PackedLinear) for m in model.modules())
    with torch.no_grad():
        torch.testing.assert_close(model(idx), before, rtol=1e-4, atol=1e-5)


# ---------------------------------------------------------------------------------
# Streaming text: whole characters, stop strings never printed.


def stream_all(tok: Tokenizer, ids: list[int], stop: tuple[str, ...], chunk: int = 1) -> tuple:
    stream = TextStream(tok, stop)
    pieces = [stream.feed(ids[i : i + chunk]) for i in range(0, len(ids), chunk)]
    pieces.append(stream.finish())
    return pieces, stream


def test_stream_cuts_at_the_first_stop_string_and_never_prints_it() -> None:
    tok = CharTokenizer.from_text("abc \nXYZ")
    text = "abc ab\nc\n\nXYZ\n\n"
    pieces, stream = stream_all(tok, tok.encode(text), ("\n\n", "ZZ"))
    assert "".join(pieces) == "abc ab\nc" == stream.text
    assert stream.stopped
    assert all("\n\n" not in p for p in pieces)


def test_stream_releases_a_held_prefix_that_was_not_a_stop() -> None:
    tok = CharTokenizer.from_text("ab\n")
    pieces, stream = stream_all(tok, tok.encode("a\nb\n"), ("\n\n",))
    assert pieces == ["a", "", "\nb", "", "\n"]  # "\n" waits until it cannot start "\n\n"
    assert not stream.stopped


@pytest.mark.parametrize("text", ["안녕하세요 세계", "emoji 🎉🚀 mix é", "日本語のテキスト"])
def test_stream_never_prints_a_broken_character(text: str) -> None:
    tok = TiktokenTokenizer("gpt2")  # byte-level: these split across tokens
    pieces, stream = stream_all(tok, tok.encode(text), ("\n\n",))
    assert "".join(pieces) == text
    assert all("\ufffd" not in p for p in pieces)


# ---------------------------------------------------------------------------------
# Steps -> text chunks for n sequences: one path for sample, chat and a server.


def fake_steps(rows: list[list[int]], consumed: list[int]) -> Iterator[Step]:
    """Steps drawing rows[b][i] for sequence b at position i; counts what was taken."""
    for column in zip(*rows, strict=True):
        consumed.append(1)
        token = torch.tensor(column)
        yield Step(token, torch.full((len(column),), -0.5))


def test_text_generation_ends_each_sequence_with_its_reason() -> None:
    tok = CharTokenizer.from_text("abcxyz\n")
    rows = [tok.encode("ab\n\nxyzx"), tok.encode("abcabcab"), tok.encode("xyzxyzxy")]
    rows[2][3] = 99  # a stop id: kept in the ids, not in the text
    consumed: list[int] = []
    generation = TextGeneration(fake_steps(rows, consumed), tok, 3, ("\n\n",), stop_ids={99})
    chunks = list(generation)
    ends = {c.index: c.finish for c in chunks if c.finish is not None}
    assert ends == {0: "stop", 1: "limit", 2: "stop token"}
    for index, completion in enumerate(generation.completions):
        mine = [c for c in chunks if c.index == index]
        assert "".join(c.text for c in mine) == completion.text
        assert mine[-1].finish == completion.finish and mine[-1].token is None
        assert [c.token for c in mine[:-1]] == completion.ids
    assert [c.text for c in generation.completions] == ["ab", "abcabcab", "xyz"]
    assert generation.completions[2].ids[-1] == 99 and len(consumed) == 8
    assert generation.tokens == 4 + 8 + 4 and chunks[0].prob == pytest.approx(0.6065, abs=1e-4)


def test_text_generation_stops_taking_steps_when_every_sequence_ended() -> None:
    tok = CharTokenizer.from_text("ab\n")
    consumed: list[int] = []
    rows = [tok.encode("a\n\nbbbbbb"), tok.encode("ab\n\nbbbbb")]
    generation = TextGeneration(fake_steps(rows, consumed), tok, 2, ("\n\n",))
    assert [c.finish for c in generation if c.finish] == ["stop", "stop"]
    assert len(consumed) == 4 and generation.seconds >= generation.first_token_s > 0


def test_generate_text_is_generate_decoded_with_its_record() -> None:
    model = tiny_model("rope", block_size=32)
    tok = CharTokenizer.from_text("".join(chr(ord("0") + i) for i in range(64)))
    ids = tok.encode("hello")
    config = SampleConfig(max_new_tokens=12, temperature=1.0, num_samples=3, seed=4)
    generation = generate_text(model, tok, ids, config, top=2)
    chunks = list(generation)
    expected = tokens(model, torch.tensor([ids]), config)
    assert [c.ids for c in generation.completions] == expected
    assert [c.text for c in generation.completions] == [tok.decode(row) for row in expected]
    assert all(len(c.top) == 12 and len(c.top[0]) == 2 for c in generation.completions)
    assert len(chunks) == 3 * 13
    record = generation.record("hello", ids, config)
    assert record["seed"] == 4 and record["prompt_ids"] == ids
    assert [s["token_ids"] for s in record["samples"]] == expected
    assert all(s["stopped"] is False and len(s["top"]) == 12 for s in record["samples"])


def test_the_suggested_num_samples_fits_and_one_more_does_not() -> None:
    model = GPT(tiny_config(vocab_size=50_257, block_size=64))
    config = SampleConfig(num_samples=MAX_BATCH, max_new_tokens=100, top_p=0.9)
    plan = Plan(MAX_BATCH, 5, config, kept_per_token=record_bytes())
    free = Available(device=None, host=2**30)  # 1 GiB for this test, whatever the machine
    with pytest.raises(GenerationError) as refused:
        check_fits(model, plan, free)
    message = str(refused.value)
    assert "but 1.0 GiB is available" in message and "--num-samples" in message
    n = int(re.search(r"--num-samples ([\d,]+) or fewer$", message)[1].replace(",", ""))
    check_fits(model, replace(plan, rows=n), free)
    with pytest.raises(GenerationError):
        check_fits(model, replace(plan, rows=n + 1), free)
    need = estimate(model.config, 4, replace(plan, rows=n))
    assert need.logits > n * 50_257 * 4 * 2  # more than the logits and one copy
