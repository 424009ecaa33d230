"""Continuous batching: many generations, each with its own prompt, settings and random
stream, decoded together one token a step (what a server needs when requests overlap).

A `Job` is one request: n sequences after one prompt, drawn with its own
`SampleConfig` and a generator seeded by its seed. `BatchDecoder.step()` admits the
jobs waiting (while slots are free: each prompt is prefilled alone, through a batch-1
view of its slots, then copied to its n rows), draws the next token of every running
sequence of every job (`next_step`, exactly as `generate` draws: the same masks,
penalties, filters and generator calls), and runs all the new tokens through the model
in one forward pass (`RowsKVCache`: each row at its own position). Jobs that end leave
at once and the rows after them move up, so the batch is always the first `rows`
slots. So a job's tokens do not depend on what else is decoded beside it: served alone
or with others, the same request gives the same tokens (up to float rounding, which
the batch size can change in the last bit).

Each job keeps the window policy of `ModelContext`: a context that would outgrow
`block_size` keeps its newest half window, run again (so a long generation here is
what `minigpt sample` computes). Nothing here holds a thread or a socket: a server
calls `submit`, `step` and `cancel` from one thread, and hands the chunks on.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import dataclass, field

import torch

from minigpt.config import SampleConfig
from minigpt.errors import GenerationError
from minigpt.generation.context import check_cache_fits, kept_on_slide
from minigpt.generation.generate import Chunk, Step, TextGeneration, next_step
from minigpt.generation.utf8 import Utf8Cache, Utf8Rows
from minigpt.kvcache import RowsKVCache
from minigpt.model import GPT
from minigpt.tokenizer.encodings import Tokenizer


@dataclass(eq=False)
class Job:
    """One request: `config.num_samples` sequences after the prompt `ids`."""

    ids: list[int]
    config: SampleConfig
    top: int = 0  # the model's likeliest alternatives recorded per token
    stop_ids: Collection[int] = ()  # ids that end a sequence (besides <|endoftext|>)
    generation: TextGeneration | None = None  # set when submitted
    error: str | None = None  # why the job ended early, when it did
    cancelled: bool = False  # the caller left: the job ends at the next step
    submitted: float = field(default_factory=time.perf_counter)
    # set when admitted
    first: int = 0  # its first row
    logits: torch.Tensor | None = None  # (n, V) the next-token logits of its rows
    context: torch.Tensor | None = None  # (n, t) the ids in its rows' context windows
    generator: torch.Generator | None = None
    utf8: Utf8Rows | None = None
    next: torch.Tensor | None = None  # (n,) the ids just drawn, fed at the step's end
    steps: int = 0

    @property
    def rows(self) -> int:
        return self.config.num_samples

    @property
    def done(self) -> bool:
        return self.generation is not None and self.generation.finished


@dataclass
class Update:
    """What one step gave one job: its chunks, and whether it has ended."""

    job: Job
    chunks: list[Chunk]
    done: bool


class BatchDecoder:
    """Decodes up to `max_rows` sequences at once, from jobs that come and go."""

    def __init__(self, model: GPT, tokenizer: Tokenizer, max_rows: int) -> None:
        self.model, self.tokenizer = model, tokenizer
        self.block_size = model.config.block_size
        check_cache_fits(model, max_rows, self.block_size)
        self.cache = RowsKVCache(model.config, max_rows, model.device, model.dtype)
        self.max_rows = max_rows
        self.waiting: list[Job] = []
        self.running: list[Job] = []
        vocab = model.config.vocab_size or tokenizer.vocab_size
        self.utf8 = Utf8Cache(tokenizer).tables(vocab, model.device)

    @property
    def idle(self) -> bool:
        return not self.waiting and not self.running

    @property
    def rows(self) -> int:
        """Sequences being decoded now."""
        return self.cache.rows

    def submit(self, job: Job) -> Job:
        """Queue a job; it starts at a step with room for its rows."""
        if not 1 <= job.rows <= self.max_rows:
            raise ValueError(f"a job may have 1..{self.max_rows} sequences, not {job.rows}")
        if not job.ids:
            raise ValueError("a job needs at least one prompt id")
        config = job.config
        job.generation = TextGeneration(
            (), self.tokenizer, job.rows, config.stop, job.stop_ids, job.submitted,
            ignore_eos=config.ignore_eos,
        )  # fmt: skip
        self.waiting.append(job)
        return job

    def cancel(self, job: Job) -> None:
        """End `job` at the next step (its rows are freed for others)."""
        job.cancelled = True

    def fail_all(self, error: str) -> list[Update]:
        """End every job, waiting or running, with `error` (after a step failed: the
        rows' state cannot be trusted); the decoder is empty and usable again."""
        jobs, self.waiting, self.running = self.waiting + self.running, [], []
        self.cache.rows = 0
        updates = []
        for job in jobs:
            job.error = error
            assert job.generation is not None
            updates.append(Update(job, job.generation.close(), True))
        return updates

    @torch.inference_mode()
    def step(self) -> list[Update]:
        """Admit what fits, draw one token for every running sequence, run them."""
        updates = self._admit()
        steps = self._next_steps()
        for job in self.running:
            updates.append(Update(job, self._record(job, steps.get(job)), False))
        for update in updates:
            update.done = update.job.done or update.job.cancelled or update.job.error is not None
        self._leave([u.job for u in updates if u.done])
        if self.running:
            self._forward()
        return updates

    # -- admission ---------------------------------------------------------------

    def _admit(self) -> list[Update]:
        """Prefill waiting jobs, in order, while their rows fit; a cancelled one leaves."""
        updates: list[Update] = []
        while self.waiting and self.cache.rows + self.waiting[0].rows <= self.max_rows:
            job = self.waiting.pop(0)
            assert job.generation is not None
            if job.cancelled or job.config.max_new_tokens == 0:  # nothing to decode
                updates.append(Update(job, job.generation.close(), True))
                continue
            self._prefill(job)
            self.running.append(job)
        return updates

    def _prefill(self, job: Job) -> None:
        """Run the prompt (its last block_size ids) into the job's first row, copy it to
        the others; the rows' logits and context are the job's."""
        first = job.first = self.cache.rows
        ids = job.ids[-self.block_size :]
        prompt = torch.tensor([ids], dtype=torch.long, device=self.model.device)  # (1, t)
        logits = self.model(prompt, kv_cache=self.cache.view(first), last_only=True)  # (1, 1, V)
        self.cache.set_length(first, len(ids))
        for row in range(first + 1, first + job.rows):
            self.cache.copy(first, row)
        self.cache.rows += job.rows
        job.logits = logits[:, -1].float().expand(job.rows, -1)  # (n, V)
        job.context = prompt.expand(job.rows, -1)  # (n, t)
        job.generator = torch.Generator(device=self.model.device).manual_seed(job.config.seed)
        job.utf8 = None if self.utf8 is None else self.utf8.rows(job.rows)

    # -- a step ------------------------------------------------------------------

    def _next_steps(self) -> dict[Job, Step | GenerationError]:
        """Each running job's next step. Jobs that draw alike (the same temperature and
        filters, no penalties) are drawn together, each row from its own job's
        generator: what each would draw alone, for a fraction of the calls."""
        groups: dict[tuple, list[Job]] = {}
        for job in self.running:
            if not job.cancelled:
                c = job.config
                alike = (c.temperature, c.top_k, c.top_p, c.min_p)
                groups.setdefault((id(job),) if c.penalized else alike, []).append(job)
        steps: dict[Job, Step | GenerationError] = {}
        for jobs in groups.values():
            try:
                steps.update(self._draw_together(jobs))
            except GenerationError as e:  # no row was drawn: find the job it comes from
                for job in jobs:
                    try:
                        steps.update(self._draw_together([job]))
                    except GenerationError:
                        steps[job] = e
        return steps

    def _draw_together(self, jobs: list[Job]) -> dict[Job, Step]:
        """One `next_step` for the rows of `jobs` (of one group), split by job."""
        assert all(j.logits is not None and j.context is not None for j in jobs)
        logits = torch.cat([j.logits for j in jobs])  # type: ignore[misc]  # (B, V)
        rows = None
        if self.utf8 is not None:
            rows = Utf8Rows(self.utf8, torch.cat([j.utf8.states for j in jobs]))  # type: ignore[union-attr]
        generators = [(j.generator, j.rows) for j in jobs]
        context = jobs[0].context if len(jobs) == 1 else None  # penalised jobs go alone
        top = max(j.top for j in jobs)
        step = next_step(logits, jobs[0].config, generators, self.tokenizer.vocab_size, top,
                         rows, context)  # fmt: skip
        out, start = {}, 0
        for job in jobs:
            end = start + job.rows
            if rows is not None:
                job.utf8 = Utf8Rows(self.utf8, rows.states[start:end])  # type: ignore[arg-type]
            out[job] = _rows_of(step, start, end, job.top)
            start = end
        return out

    def _record(self, job: Job, step: Step | GenerationError | None) -> list[Chunk]:
        """The job's drawn step as chunks (none for a cancelled job)."""
        assert job.generation is not None
        if step is None:
            return []
        if isinstance(step, GenerationError):
            job.error = str(step)
            return job.generation.close()
        job.steps += 1
        job.next = step.token
        chunks = job.generation.advance(step)
        if job.steps >= job.config.max_new_tokens and not job.generation.finished:
            chunks += job.generation.close()
        return chunks

    def _leave(self, gone: list[Job]) -> None:
        """Free the rows of jobs that ended; the rows after them move up."""
        if not any(job in self.running for job in gone):
            return
        kept = [job for job in self.running if job not in gone]
        row = 0
        for job in kept:
            if job.first != row:
                for i in range(job.rows):
                    self.cache.copy(job.first + i, row + i)
                job.first = row
            row += job.rows
        self.cache.rows = row
        self.running = kept

    def _forward(self) -> None:
        """Feed every running row its drawn token; each job gets its next logits."""
        for job in self.running:
            if self._full(job):
                self._slide(job)
        tokens = torch.cat([job.next for job in self.running]).unsqueeze(1)  # (B, 1)
        logits = self.model(tokens, kv_cache=self.cache)[:, -1].float()  # (B, V)
        for job in self.running:
            assert job.context is not None
            job.logits = logits[job.first : job.first + job.rows]  # (n, V)
            job.context = torch.cat((job.context, job.next.unsqueeze(1)), dim=1)  # (n, t + 1)

    def _full(self, job: Job) -> bool:
        return int(self.cache.lengths[job.first]) >= self.block_size

    def _slide(self, job: Job) -> None:
        """The window is full: keep the newest half window (with the token about to be
        fed), as `ModelContext` does: its older part is run again here, the token in
        the step."""
        assert job.context is not None
        keep = kept_on_slide(self.block_size, 1) - 1  # context ids kept besides the new one
        job.context = job.context[:, job.context.size(1) - keep :]  # (n, keep)
        view = self.cache.view(job.first, job.rows)
        if keep:
            self.model(job.context, kv_cache=view, last_only=True)
        for i in range(job.rows):
            self.cache.set_length(job.first + i, keep)


def _rows_of(step: Step, start: int, end: int, top: int) -> Step:
    """Rows start..end-1 of a step, with their first `top` alternatives."""
    stuck = None if step.stuck is None else step.stuck[start:end]
    return Step(
        step.token[start:end],
        step.logprob[start:end],
        None if not top or step.top_ids is None else step.top_ids[start:end, :top],
        None if not top or step.top_logprobs is None else step.top_logprobs[start:end, :top],
        None if step.sampled_logprob is None else step.sampled_logprob[start:end],
        stuck if stuck is not None and bool(stuck.any()) else None,
    )
