"""Validation: loss in nats per token and bits per byte, over random batches (during
training) or a whole split (at the end).

Bits per byte = summed token loss / (ln 2 x UTF-8 bytes of the targets), which compares
runs across tokenizers. With several processes each rank evaluates its share of the
batches and the sums are added up, so every rank gets the same figures.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from itertools import islice

import numpy as np
import torch
import torch.nn.functional as F

from minigpt.data.batches import get_batch, iter_windows
from minigpt.device import autocast
from minigpt.model import GPT
from minigpt.training.distributed import DistContext, all_reduce_sum

FINAL_EVAL_MAX_TOKENS = 1 << 20  # the final validation pass reads at most this many tokens


@torch.no_grad()
def evaluate(
    model: GPT,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    byte_lengths: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    ctx: DistContext | None = None,
) -> tuple[float, float]:
    """(nats per token, bits per byte) over the targets of `batches`.

    With a DistContext, each rank passes all batches and evaluates every
    world_size-th one; the sums are reduced over ranks.
    """
    ctx = ctx or DistContext()
    loss_sum, n_tokens, n_bytes = 0.0, 0, 0
    was_training = model.training
    model.eval()
    for x, y in islice(batches, ctx.rank, None, ctx.world_size):
        x, y = x.to(device), y.to(device)
        with autocast(device, dtype):
            logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
        loss_sum += loss.item()
        n_tokens += y.numel()
        n_bytes += int(byte_lengths[y].sum())
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


def evaluate_split(
    model: GPT,
    data: np.ndarray,
    batch_size: int,
    byte_lengths: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    max_tokens: int = FINAL_EVAL_MAX_TOKENS,
    ctx: DistContext | None = None,
) -> tuple[float, float]:
    """Loss and bpb over every target of a split (its first max_tokens tokens)."""
    batches = iter_windows(data[:max_tokens], model.config.block_size, batch_size)
    return evaluate(model, batches, byte_lengths, device, dtype, ctx)
