"""One optimizer step: this rank's micro-batches, accumulated gradients, one collective
that every rank's decisions rest on, clipping and the AdamW step.

A step whose loss or gradient norm is not finite is skipped (the weights and the
optimizer's moments stay as they were) and counted; `max_bad_steps` of them in a row
end the run with a `TrainingError`, leaving the last checkpoint as it was.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from minigpt.config import TrainConfig
from minigpt.data.batches import batch_at, draw_starts
from minigpt.device import autocast
from minigpt.errors import TrainingError
from minigpt.training.distributed import all_reduce_sum
from minigpt.training.optim import set_lr
from minigpt.training.setup import Setup, wrapped_model
from minigpt.training.state import TrainState


def forward_backward(
    model: torch.nn.Module,
    micro_batches: list[tuple[torch.Tensor, torch.Tensor]],
    config: TrainConfig,
    device: torch.device,
    dtype: torch.dtype,
    scaler: torch.amp.GradScaler | None,
    ddp: bool,
) -> float:
    """Accumulate the gradient of the mean loss over the micro-batches; that mean.

    Under DDP, gradients are synchronised on the last micro-batch only.
    """
    loss_sum = 0.0
    for i, (x, y) in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        with nullcontext() if last or not ddp else model.no_sync():
            with autocast(device, dtype):
                logits = model(x.to(device))  # (B, T, V)
                loss = F.cross_entropy(
                    logits.float().flatten(0, 1),
                    y.to(device).flatten(),
                    label_smoothing=config.label_smoothing,
                )
            scaled = loss / len(micro_batches)
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        loss_sum += loss.item()
    return loss_sum / len(micro_batches)


def apply_gradients(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    lr: float,
    loss: float,
    config: TrainConfig,
    scaler: torch.amp.GradScaler | None,
) -> tuple[bool, float]:
    """Clip and step unless the loss or gradient norm is not finite; (stepped, norm).

    With fp16's gradient scaler, an overflowing gradient is the scaler's business:
    it skips that step itself and lowers the scale.
    """
    set_lr(optimizer, lr)
    if scaler is not None:
        scaler.unscale_(optimizer)
    max_norm = config.grad_clip if config.grad_clip > 0 else float("inf")
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    ok = math.isfinite(loss) and (scaler is not None or math.isfinite(norm))
    if ok:
        if scaler is not None:
            scaler.step(optimizer)
        else:
            optimizer.step()
    if scaler is not None:
        scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return ok, norm


@dataclass(frozen=True)
class StepOutcome:
    loss: float  # the mean over micro-batches and ranks
    grad_norm: float
    ok: bool  # False: not finite, so the step was skipped
    stop_requested: bool  # some rank was asked to stop (a signal)


class TrainStep:
    """Takes the run's steps, the same way on every rank."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.model = wrapped_model(setup)  # what the steps run: compiled, DDP
        cfg, block = setup.config, setup.model.config.block_size
        self.tokens_per_step = cfg.batch_size * cfg.grad_accum * block * setup.ctx.world_size
        self.bad_in_a_row = 0

    def __call__(
        self, state: TrainState, lr: float, should_stop: Callable[[], bool], start: float
    ) -> StepOutcome:
        """Take step `state.step` and count it in `state`; `start` is the perf_counter()
        the run's elapsed time counts from."""
        s, cfg, ws = self.setup, self.setup.config, self.setup.ctx.world_size
        try:
            loss = forward_backward(
                self.model, self._micro_batches(), cfg, s.device, s.dtype, s.scaler, s.ctx.enabled
            )
        except torch._dynamo.exc.BackendCompilerFailed as e:  # at the first step, if at all
            cause = e.inner_exception
            first = next(iter(str(cause).strip().splitlines()), type(cause).__name__)
            raise TrainingError(
                f"torch.compile failed here ({first}); train with --compile off"
            ) from e
        # One collective per step: the mean loss, any rank's stop request and the mean
        # clock, so that every rank takes the same decisions.
        loss_sum, stop_votes, clock = all_reduce_sum(
            [loss, float(should_stop()), time.perf_counter() - start], s.ctx
        )
        loss = loss_sum / ws
        ok, norm = apply_gradients(self.model, s.optimizer, lr, loss, cfg, s.scaler)
        state.advance(self.tokens_per_step, clock / ws, skipped=not ok)
        self.bad_in_a_row = 0 if ok else self.bad_in_a_row + 1
        if self.bad_in_a_row >= cfg.max_bad_steps:
            raise diverged(self.bad_in_a_row, state.step, lr, s.run_dir)
        return StepOutcome(loss, norm, ok, stop_votes > 0)

    def _micro_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of the step's micro-batches; the draw covers every rank."""
        s, cfg, ctx = self.setup, self.setup.config, self.setup.ctx
        data, block = s.dataset.splits["train"], s.model.config.block_size
        starts = draw_starts(
            data, ctx.world_size * cfg.grad_accum, cfg.batch_size, block, s.data_gen
        )  # (world_size * grad_accum, batch_size)
        mine = starts[ctx.rank * cfg.grad_accum : (ctx.rank + 1) * cfg.grad_accum]
        return [batch_at(data, row, block) for row in mine]


def diverged(
    count: int, step: int, lr: float | None, run_dir: Path, what: str = "loss or gradient"
) -> TrainingError:
    """The error that ends a run whose loss, gradient or val loss is not finite."""
    at_lr = f" (it was {lr:.2g})" if lr is not None else ""
    return TrainingError(
        f"the {what} was not finite for {count} step(s) in a row, up to step {step}: "
        f"training diverged; lower --lr{at_lr}, raise --warmup, or use --precision fp32 "
        f"or bf16 rather than fp16. The last good checkpoint in {run_dir} is unchanged"
    )
