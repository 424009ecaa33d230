"""The one generation path: prompt ids -> steps (ids drawn, log-probabilities) -> text.

- `prompt_ids`: the ids a prompt starts from;
- `generate`: prefill a prompt into a fresh `ModelContext`, then `continue_from` it;
- `continue_from`: draw from the logits, feed the draw back, repeat: one `Step` per
  position for B sequences. With a byte-level tokenizer's `Utf8Tables` each row keeps
  the state of its bytes' UTF-8 and may draw only tokens that keep them valid
  (`minigpt.generation.utf8`; rows start between characters, after a prompt that is
  text), so no sample ever holds bytes that are not text;
- `TextGeneration`: steps -> `Chunk`s of printable text for each of the n sequences
  (whole UTF-8 characters, stop strings held back, special tokens never as text), and
  each sequence's `Completion`: its ids, log-probabilities, top alternatives, text and
  why it ended. `<|endoftext|>` ends a sequence (kept in its ids, not in its text)
  unless `ignore_eos`; then it, like any other special token, adds no text;

Each drawn token carries two log-probabilities: the model's own (temperature 1, no
filters: what it predicted) and the sampler's (after penalties, temperature and the
top-k/top-p/min-p filters: what the token was actually drawn with).
- `generate_text`: `generate` and `TextGeneration` together, from prompt ids.

Every caller goes through here: `minigpt sample` (one streamed sample, a batch, JSON,
probabilities), the chat session, the sample shown while training. Chunks carry the
sequence they belong to, so a server can stream n sequences at once. Nothing here
prints: the caller shows what it is given.
"""

from __future__ import annotations

import math
import time
from collections.abc import Collection, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

from minigpt.config import SampleConfig
from minigpt.errors import TokenizerError
from minigpt.generation.context import ModelContext
from minigpt.generation.memory import Plan, check_fits, record_bytes
from minigpt.generation.sampling import Generators, draw, finite_logits, mask_blocked
from minigpt.generation.text import TextStream
from minigpt.generation.utf8 import Utf8Cache, Utf8Rows, Utf8Tables
from minigpt.model import GPT
from minigpt.tokenizer.encodings import Tokenizer


@dataclass
class Step:
    """One generated position for B sequences."""

    token: torch.Tensor  # (B,) the ids drawn
    logprob: torch.Tensor  # (B,) log-probability the model gave them (T = 1, no filters)
    top_ids: torch.Tensor | None = None  # (B, n) the model's n likeliest ids
    top_logprobs: torch.Tensor | None = None  # (B, n) and their log-probabilities
    sampled_logprob: torch.Tensor | None = None  # (B,) theirs in the distribution drawn
    # from (after penalties, temperature, filters); None where a step does not say
    stuck: torch.Tensor | None = None  # (B,) bool: rows with no valid token left (their
    # token is not one: the sequence ends before it); None when no row is


def prompt_ids(tokenizer: Tokenizer, prompt: str) -> list[int]:
    """The ids to start from: the encoded prompt, or for an empty prompt a newline
    (text models see it often), else `<|endoftext|>`, else id 0."""
    if prompt:
        return tokenizer.encode(prompt)
    try:
        return tokenizer.encode("\n")
    except TokenizerError:
        return [tokenizer.eot_id if tokenizer.eot_id is not None else 0]


def generate(
    model: GPT,
    prompt: torch.Tensor,
    config: SampleConfig,
    generator: torch.Generator | None = None,
    valid_vocab: int | None = None,
    *,
    use_cache: bool = True,
    top: int = 0,
    kept_per_token: int = 0,
    utf8: Utf8Tables | None = None,
) -> Iterator[Step]:
    """Yield up to config.max_new_tokens steps after prompt ids (B, T).

    A one-row prompt with config.num_samples > 1 is prefilled once and then decoded
    as num_samples rows. With the cache each step runs one position; without it the
    whole context runs again (same tokens, far slower). `top` > 0 records the model's
    `top` likeliest alternatives in each step; `utf8` keeps each row's bytes valid
    UTF-8 (`continue_from`). The prompt is prefilled by the call
    itself, so a prompt or batch that cannot run fails here, not at the first step;
    before that, a batch that memory cannot hold (`kept_per_token`: the bytes the
    caller keeps per generated token and row) is refused (`memory.check_fits`).
    """
    if prompt.size(1) == 0:
        raise ValueError("the prompt needs at least one token (see prompt_ids)")
    if prompt.size(0) > 1 and config.num_samples > 1:
        raise ValueError("num_samples > 1 needs a one-row prompt: its rows are the samples")
    rows = max(prompt.size(0), config.num_samples)
    plan = Plan(rows, prompt.size(1), config, top, kept_per_token, use_cache)
    check_fits(model, plan)
    # The context never holds more than the prompt and the new tokens (nor block_size).
    capacity = prompt.size(1) + config.max_new_tokens
    context = ModelContext(model, prompt.size(0), use_cache=use_cache, capacity=capacity)
    logits = context.feed(prompt)  # (B, V)
    if prompt.size(0) == 1 and config.num_samples > 1:
        context.repeat(config.num_samples)
        logits = logits.expand(config.num_samples, -1)
    return continue_from(context, logits, config, generator, valid_vocab, top=top, utf8=utf8)


@torch.inference_mode()
def continue_from(
    context: ModelContext,
    logits: torch.Tensor,
    config: SampleConfig,
    generator: torch.Generator | None = None,
    valid_vocab: int | None = None,
    *,
    top: int = 0,
    utf8: Utf8Tables | None = None,
) -> Iterator[Step]:
    """Steps that continue `context`, whose next-token logits (B, V) are `logits`:
    draw, feed the draw back, repeat, up to config.max_new_tokens steps.

    With `utf8`, every row starts between characters and draws only tokens that keep
    its bytes valid UTF-8 (the first sampling step); a row whose every such token has
    a NaN logit is `stuck` in its step (see `Step`). The last token drawn is not fed
    (nothing would read its logits); a caller that goes on from this context feeds it
    first (`ModelContext.sync` does)."""
    if utf8 is not None and utf8.blocked.size(-1) != logits.size(-1):
        raise ValueError("the UTF-8 tables must cover the model's vocabulary")
    rows = None if utf8 is None else utf8.rows(logits.size(0))
    for i in range(config.max_new_tokens):
        step = next_step(logits, config, generator, valid_vocab, top, rows, context.tokens)
        yield step
        if i + 1 < config.max_new_tokens:
            logits = context.feed(step.token.unsqueeze(1))


def next_step(
    logits: torch.Tensor,
    config: SampleConfig,
    generator: Generators,
    valid_vocab: int | None,
    top: int,
    rows: Utf8Rows | None,
    context: torch.Tensor | None,
) -> Step:
    """One token for each of B rows from their next-token logits (B, V): padded ids
    and NaN masked, each row's UTF-8 mask applied (and `rows` advanced past the
    draw), penalties over the `context` ids (B, n), then the draw (one generator, or
    one per segment of rows: `sampling.Generators`)."""
    finite = finite_logits(logits, valid_vocab)  # (B, V), for the draw and the record
    blocked = None if rows is None else rows.blocked()  # (B, V)
    allowed, stuck = mask_blocked(finite, blocked)  # (B, V), (B,) or None
    recent = context if config.penalized else None
    token, drawn_p = draw(allowed, config, generator, recent)  # (B,), (B,)
    if rows is not None:
        rows.advance(token)
    return _step(finite, token, drawn_p, top, stuck)


def _step(
    logits: torch.Tensor,
    token: torch.Tensor,
    drawn_p: torch.Tensor,
    top: int,
    stuck: torch.Tensor | None = None,
) -> Step:
    """The drawn tokens with the model's own view of them (log-probabilities at
    temperature 1, before any mask) and the sampler's (`drawn_p`, their probabilities
    when drawn)."""
    logprobs = torch.log_softmax(logits, dim=-1)  # (B, V)
    model_logprob = logprobs.gather(-1, token.unsqueeze(-1)).squeeze(-1)  # (B,)
    step = Step(token, model_logprob, sampled_logprob=drawn_p.log(), stuck=stuck)
    if top > 0:
        values, ids = logprobs.topk(min(top, logprobs.size(-1)), dim=-1)  # (B, n)
        step.top_ids, step.top_logprobs = ids, values
    return step


# ---------------------------------------------------------------------------------
# Steps -> text: a `Completion` per sequence, `Chunk`s of printable text as they come.

Alternatives = list[tuple[int, float]]  # the model's likeliest (id, log-probability)
# a stop string, a stop id (<|endoftext|> among them), the token limit, a stuck row
Finish = Literal["stop", "stop token", "limit", "no valid token"]


@dataclass
class Chunk:
    """What one step added to one sequence: printable text, and the token behind it.

    Every token gives one chunk, whose text may be empty (held back: part of a
    character, or perhaps of a stop string). A sequence's last chunk has no token: it
    holds whatever was still held back, and `finish` says why the sequence ended."""

    index: int  # which of the n sequences
    text: str
    token: int | None = None
    logprob: float = 0.0  # the model's log-probability of `token` (T = 1, no filters)
    top: Alternatives = field(default_factory=list)
    finish: Finish | None = None  # on the last chunk only
    sampled_logprob: float | None = None  # `token`'s in the distribution it was drawn from

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    @property
    def sampled_prob(self) -> float | None:
        return None if self.sampled_logprob is None else math.exp(self.sampled_logprob)


@dataclass
class Completion:
    """One generated sequence: its ids, the model's and the sampler's log-probabilities
    of them, its text and why it ended."""

    stream: TextStream
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)  # the model's (T = 1, no filters)
    sampled_logprobs: list[float] = field(default_factory=list)  # the distribution drawn from
    top: list[Alternatives] = field(default_factory=list)  # per token, when asked for
    finish: Finish | None = None  # None while it runs, and after an interruption

    @property
    def text(self) -> str:
        """The text so far: never a stop string, nor anything after one."""
        return self.stream.text

    def record(self) -> dict[str, Any]:
        """As plain JSON data (log-probabilities to 6 decimals)."""
        entry: dict[str, Any] = {
            "text": self.text,
            "token_ids": self.ids,
            "logprobs": [round(lp, 6) for lp in self.logprobs],
            "sampled_logprobs": [round(lp, 6) for lp in self.sampled_logprobs],
            "stopped": self.finish == "stop",
            "finish": self.finish,
        }
        if self.top:
            entry["top"] = [[[i, round(lp, 6)] for i, lp in alts] for alts in self.top]
        return entry


class TextGeneration:
    """Steps for n sequences -> their `Chunk`s, in order; iterate it once.

    A sequence ends at a stop string (left out of its text), at a token in `stop_ids`
    or at `<|endoftext|>` unless `ignore_eos` (kept in its ids, left out of its text),
    at a stuck step (`Step.stuck`: "no valid token"), or when the steps run out; the
    steps stop once every sequence has ended. A special token that does not end a
    sequence adds no text. `completions` hold what each sequence has so far.
    Times count from `start` (default: now), so a caller can include its prefill."""

    def __init__(
        self,
        steps: Iterable[Step],
        tokenizer: Tokenizer,
        n: int = 1,
        stop: Sequence[str] = (),
        stop_ids: Collection[int] = (),
        start: float | None = None,
        *,
        ignore_eos: bool = False,
    ) -> None:
        self.completions = [Completion(TextStream(tokenizer, stop)) for _ in range(n)]
        self._steps = steps
        eot = () if ignore_eos or tokenizer.eot_id is None else (tokenizer.eot_id,)
        self._stop_ids = frozenset(stop_ids) | frozenset(eot)
        self.start = time.perf_counter() if start is None else start
        self.first_token_s = 0.0  # from start to the first step
        self.seconds = 0.0  # from start to the end of the iteration

    @property
    def tokens(self) -> int:
        """Tokens generated so far, over all sequences."""
        return sum(len(c.ids) for c in self.completions)

    @property
    def finished(self) -> bool:
        """Every sequence has ended."""
        return all(c.finish is not None for c in self.completions)

    def __iter__(self) -> Iterator[Chunk]:
        try:
            for step in self._steps:
                yield from self.advance(step)
                if self.finished:
                    break
            yield from self.close()
        finally:
            self.seconds = time.perf_counter() - self.start

    def advance(self, step: Step) -> list[Chunk]:
        """The chunks of one more step, for a caller that drives the steps itself."""
        if not any(c.ids or c.finish for c in self.completions):
            self.first_token_s = time.perf_counter() - self.start
        return list(self._advance(step))

    def close(self, finish: Finish = "limit") -> list[Chunk]:
        """End every sequence still running (the steps ran out: "limit")."""
        self.seconds = time.perf_counter() - self.start
        return [_end(c, i, finish) for i, c in enumerate(self.completions) if c.finish is None]

    def _advance(self, step: Step) -> Iterator[Chunk]:
        """One chunk per running sequence (and the last one of each that ends here)."""
        tokens, logprobs = step.token.tolist(), step.logprob.tolist()
        sampled = None if step.sampled_logprob is None else step.sampled_logprob.tolist()
        tops = _alternatives(step)
        stuck = None if step.stuck is None else step.stuck.tolist()
        for index, c in enumerate(self.completions):
            if c.finish is not None:
                continue
            if stuck is not None and stuck[index]:
                yield _end(c, index, "no valid token")
                continue
            token = tokens[index]
            c.ids.append(token)
            c.logprobs.append(logprobs[index])
            if sampled is not None:
                c.sampled_logprobs.append(sampled[index])
            if tops is not None:
                c.top.append(tops[index])
            ends = token in self._stop_ids
            text = "" if ends else c.stream.feed([token])
            yield Chunk(index, text, token, logprobs[index], tops[index] if tops else [],
                        sampled_logprob=sampled[index] if sampled else None)  # fmt: skip
            if ends or c.stream.stopped:
                yield _end(c, index, "stop token" if ends else "stop")

    def record(self, prompt: str, ids: list[int], config: SampleConfig) -> dict[str, Any]:
        """The run as plain JSON data: prompt, settings, each sequence, timing."""
        return {
            "prompt": prompt,
            "prompt_ids": ids,
            "settings": asdict(config),
            "seed": config.seed,
            "samples": [c.record() for c in self.completions],
            "time_to_first_token_s": round(self.first_token_s, 6),
            "seconds": round(self.seconds, 6),
        }


def _alternatives(step: Step) -> list[Alternatives] | None:
    """Each row's top alternatives as (id, log-probability) pairs, if the step has them."""
    if step.top_ids is None or step.top_logprobs is None:
        return None
    rows = zip(step.top_ids.tolist(), step.top_logprobs.tolist(), strict=True)
    return [list(zip(ids, lps, strict=True)) for ids, lps in rows]


def _end(completion: Completion, index: int, finish: Finish) -> Chunk:
    """A sequence's last chunk: the text still held back, and why it ended."""
    completion.finish = finish
    return Chunk(index, completion.stream.finish(), finish=finish)


def generate_text(
    model: GPT,
    tokenizer: Tokenizer,
    ids: list[int],
    config: SampleConfig,
    *,
    top: int = 0,
    stop_ids: Collection[int] = (),
    use_cache: bool = True,
    as_record: bool = False,
    utf8: Utf8Cache | None = None,
) -> TextGeneration:
    """config.num_samples continuations of the prompt `ids` as text, drawn with a
    generator seeded by config.seed, stopped by config.stop (and `stop_ids`, and
    `<|endoftext|>` unless config.ignore_eos), always whole UTF-8 characters (the
    tables come from `utf8`, else are built for this call).

    The prompt is prefilled by this call, once for all the samples (a prompt or batch
    that cannot run fails here, as does one that memory cannot hold, counting what the
    `TextGeneration` keeps and, `as_record`, the JSON record the caller will build);
    iterate the result for the chunks. `top` > 0 records each token's `top` likeliest
    alternatives."""
    idx = torch.tensor([ids], dtype=torch.long, device=model.device)  # (1, T)
    generator = torch.Generator(device=model.device).manual_seed(config.seed)
    start = time.perf_counter()
    vocab = tokenizer.vocab_size
    kept = record_bytes(top, as_record)
    tables = (utf8 or Utf8Cache(tokenizer)).tables(model.config.vocab_size or vocab, model.device)
    steps = generate(
        model, idx, config, generator, vocab, use_cache=use_cache, top=top,
        kept_per_token=kept, utf8=tables,
    )  # fmt: skip
    return TextGeneration(
        steps, tokenizer, config.num_samples, config.stop, stop_ids, start,
        ignore_eos=config.ignore_eos,
    )  # fmt: skip
