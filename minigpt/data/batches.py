"""Training and evaluation batches from a split's token ids: random windows (the
starts drawn for every process at once) and the in-order windows of a full pass."""

import math

import numpy as np
import torch


def draw_starts(
    data: np.ndarray, n_batches: int, batch_size: int, block_size: int, gen: torch.Generator
) -> torch.Tensor:
    """Random window starts for n_batches batches, (n_batches, batch_size), in one draw.

    A training step draws all its micro-batches (of every process) at once, so the
    stream of batches depends on the step alone, not on how the step is split up.
    """
    return torch.randint(len(data) - block_size, (n_batches, batch_size), generator=gen)


def batch_at(
    data: np.ndarray, starts: torch.Tensor, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x and next-token targets y, each (len(starts), block_size)."""
    return _windows(data, starts.tolist(), block_size)


def get_batch(
    data: np.ndarray, batch_size: int, block_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows: inputs x and next-token targets y, each (batch_size, block_size)."""
    starts = draw_starts(data, 1, batch_size, block_size, generator)[0]
    return batch_at(data, starts, block_size)


def count_windows(data: np.ndarray, block_size: int, batch_size: int) -> int:
    """How many batches `iter_windows` yields for these arguments."""
    n_targets = max(0, len(data) - 1)
    n_full = n_targets // block_size
    return math.ceil(n_full / batch_size) + (1 if n_targets - n_full * block_size else 0)


def iter_windows(data: np.ndarray, block_size: int, batch_size: int):
    """Every target of a split exactly once, in consecutive non-overlapping windows.

    Yields batches (x, y), each (b, t); the last, shorter window comes on its own.
    """
    n_targets = len(data) - 1
    n_full = n_targets // block_size
    for first in range(0, n_full, batch_size):
        last = min(first + batch_size, n_full)
        yield _windows(data, [w * block_size for w in range(first, last)], block_size)
    rest = n_targets - n_full * block_size
    if rest:
        yield _windows(data, [n_full * block_size], rest)


def _windows(data: np.ndarray, starts: list[int], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    windows = np.stack([data[s : s + length + 1] for s in starts])  # (b, length + 1)
    w = torch.from_numpy(windows.astype(np.int64))
    return w[:, :-1], w[:, 1:]
