"""Validation: loss in nats per token and bits per byte, over random batches (during
training, while they are fewer tokens than the split) or a whole split (at the end, and
during training when it is that small); and the `Evaluator` that a run asks when to
evaluate, which keeps the best val loss and the patience count and shows samples.

Bits per byte = summed token loss / (ln 2 x UTF-8 bytes of the targets), which compares
runs across tokenizers. With several processes each rank evaluates its share of the
batches and the sums are added up, so every rank gets the same figures.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from itertools import islice

import numpy as np
import torch
import torch.nn.functional as F

from minigpt.config import SampleConfig
from minigpt.data.batches import count_windows, get_batch, iter_windows
from minigpt.device import autocast
from minigpt.generation.generate import generate_text, prompt_ids
from minigpt.generation.utf8 import Utf8Cache
from minigpt.model import GPT
from minigpt.training.distributed import DistContext, all_reduce_sum
from minigpt.training.optim import final_eval_seconds
from minigpt.training.reporting import EvalInfo
from minigpt.training.setup import Setup
from minigpt.training.state import TrainState
from minigpt.training.step import diverged

FINAL_EVAL_MAX_TOKENS = 1 << 20  # the final validation pass reads at most this many tokens
SAMPLE_TOKENS = 48  # length of the samples shown while training
TIMED_BATCHES = 3  # val batches timed to estimate the final pass


@torch.no_grad()
def evaluate(
    model: GPT,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    byte_lengths: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    ctx: DistContext | None = None,
    until: float | None = None,
    on_batch: Callable[[int], None] | None = None,
) -> tuple[float, float]:
    """(nats per token, bits per byte) over the targets of `batches`.

    With a DistContext, each rank passes all batches and evaluates every
    world_size-th one; the sums are reduced over ranks. `until`: a
    `time.perf_counter()` reading after which no further batch is started (the batches
    done so far are the measure); `on_batch(i)` is called after the i-th batch.
    """
    ctx = ctx or DistContext()
    loss_sum, n_tokens, n_bytes = 0.0, 0, 0
    was_training = model.training
    model.eval()
    for i, (x, y) in enumerate(islice(batches, ctx.rank, None, ctx.world_size), 1):
        if until is not None and i > 1 and time.perf_counter() > until:
            break
        x, y = x.to(device), y.to(device)
        with autocast(device, dtype):
            logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
        loss_sum += loss.item()
        n_tokens += y.numel()
        n_bytes += int(byte_lengths[y].sum())
        if on_batch is not None:
            on_batch(i)
    model.train(was_training)
    loss_sum, n_tokens, n_bytes = all_reduce_sum([loss_sum, n_tokens, n_bytes], ctx)
    return loss_sum / max(1, n_tokens), loss_sum / (math.log(2) * max(1, n_bytes))


def estimate_val(
    model: GPT,
    data: np.ndarray,
    batch_size: int,
    n_batches: int,
    byte_lengths: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    seed: int,
    ctx: DistContext | None = None,
) -> tuple[float, float]:
    """Validation loss and bpb on n_batches random batches (the same ones every call)."""
    gen = torch.Generator().manual_seed(seed)
    block_size = model.config.block_size
    batches = (get_batch(data, batch_size, block_size, gen) for _ in range(n_batches))
    return evaluate(model, batches, byte_lengths, device, dtype, ctx)


def reads_whole_split(eval_iters: int, batch_size: int, block_size: int, n_val: int) -> bool:
    """Whether a periodic evaluation reads the whole val split of `n_val` tokens: when
    its `eval_iters` random batches would hold at least as many tokens (exact, and no
    dearer than the estimate)."""
    return eval_iters * batch_size * block_size >= n_val


def evaluate_split(
    model: GPT,
    data: np.ndarray,
    batch_size: int,
    byte_lengths: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    max_tokens: int = FINAL_EVAL_MAX_TOKENS,
    ctx: DistContext | None = None,
    until: float | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[float, float]:
    """Loss and bpb over every target of a split (its first max_tokens tokens), or of
    the windows that fit before `until`; `on_batch(i, n)` after each of the n batches."""
    data = data[:max_tokens]
    batches = iter_windows(data, model.config.block_size, batch_size)
    ctx = ctx or DistContext()
    n = math.ceil(count_windows(data, model.config.block_size, batch_size) / ctx.world_size)
    report = None if on_batch is None else lambda i: on_batch(i, n)
    return evaluate(model, batches, byte_lengths, device, dtype, ctx, until, report)


class Evaluator:
    """When a run evaluates; its val figures, best val loss and patience; its samples."""

    def __init__(self, setup: Setup, last_val: tuple[float, float] | None = None) -> None:
        self.setup = setup
        tok = setup.dataset.tokenizer
        self.byte_lengths = torch.tensor(tok.token_byte_lengths(), device=setup.device)
        self.last_val = last_val  # (val loss, bits per byte) of the latest evaluation
        self.evals = 0
        self.utf8 = Utf8Cache(tok)  # for the samples: built at the first one

    def is_due(self, step: int, progress: float) -> bool:
        """Every eval_interval steps, before the end (the final pass comes after it)."""
        return step % self.setup.config.eval_interval == 0 and progress < 1.0

    def evaluate(
        self,
        state: TrainState,
        final: bool = False,
        on_batch: Callable[[int, int], None] | None = None,
    ) -> EvalInfo:
        """Measure the val loss (on eval_iters random batches, or the whole split when
        `final` or `reads_whole_split`; a final pass within its share of a time budget,
        `on_batch(i, n)` after each batch) and count it in `state`'s best val loss and
        patience."""
        val_loss, val_bpb = self._measure(final, on_batch)
        if not math.isfinite(val_loss):
            raise diverged(1, state.step, None, self.setup.run_dir, what="validation loss")
        self.last_val = (val_loss, val_bpb)
        best = state.best_val_loss is None or val_loss < state.best_val_loss
        if best:
            state.best_val_loss, state.best_step, state.evals_since_best = val_loss, state.step, 0
        elif not final:
            state.evals_since_best += 1
        self.evals += 1
        every = self.setup.config.sample_every
        sample = None
        if not final and every and self.evals % every == 0 and self.setup.ctx.is_main:
            sample = self._sample()
        return EvalInfo(state.step, val_loss, val_bpb, final=final, best=best, sample=sample)

    def final_pass_seconds(self) -> float:
        """How long the final pass over the val split should take: the quickest of
        `TIMED_BATCHES` batches timed after a warm-up batch (the figure least disturbed
        by other work on the machine), times the batches each rank evaluates."""
        s = self.setup
        data = s.dataset.splits["val"][:FINAL_EVAL_MAX_TOKENS]
        block, rows, ws = s.model.config.block_size, s.config.batch_size, s.ctx.world_size
        batches = list(islice(iter_windows(data, block, rows), (1 + TIMED_BATCHES) * ws))
        seconds = []
        for i in range(0, len(batches), ws):  # one batch per rank each time; the first warms up
            begin = time.perf_counter()
            evaluate(s.model, batches[i : i + ws], self.byte_lengths, s.device, s.dtype, s.ctx)
            seconds.append(time.perf_counter() - begin)
        quickest = min(seconds[1:] or seconds or [0.0])
        return quickest * math.ceil(count_windows(data, block, rows) / ws)

    def out_of_patience(self, state: TrainState) -> bool:
        """True when `patience` evaluations in a row did not beat the best val loss."""
        patience = self.setup.config.patience
        return patience is not None and state.evals_since_best >= patience

    def _measure(
        self, final: bool, on_batch: Callable[[int, int], None] | None
    ) -> tuple[float, float]:
        s, cfg = self.setup, self.setup.config
        val_data = s.dataset.splits["val"]
        block = s.model.config.block_size
        if final:
            seconds = final_eval_seconds(cfg)
            until = None if seconds is None else time.perf_counter() + seconds
            return evaluate_split(
                s.model, val_data, cfg.batch_size, self.byte_lengths, s.device, s.dtype,
                ctx=s.ctx, until=until, on_batch=on_batch,
            )  # fmt: skip
        if reads_whole_split(cfg.eval_iters, cfg.batch_size, block, len(val_data)):
            return evaluate_split(
                s.model, val_data, cfg.batch_size, self.byte_lengths, s.device, s.dtype,
                max_tokens=len(val_data), ctx=s.ctx,
            )  # fmt: skip
        return estimate_val(
            s.model, val_data, cfg.batch_size, cfg.eval_iters, self.byte_lengths, s.device,
            s.dtype, cfg.seed + 1, s.ctx,
        )  # fmt: skip

    def _sample(self) -> str:
        """A short continuation of an empty prompt, with its own fixed seed, through the
        one generation path (whole characters; it ends at <|endoftext|>)."""
        s = self.setup
        model, tok = s.model, s.dataset.tokenizer
        settings = SampleConfig(max_new_tokens=SAMPLE_TOKENS, temperature=0.8, seed=s.config.seed)
        was_training = model.training
        model.eval()
        try:
            generation = generate_text(model, tok, prompt_ids(tok, ""), settings, utf8=self.utf8)
            for _ in generation:
                pass
        finally:
            model.train(was_training)
        return generation.completions[0].text
