"""The model's context while generating: which token ids it holds, and their KV cache.

`ModelContext.feed(ids)` runs only the new ids through the model; with the cache (the
default) every earlier token's keys and values are reused, without it the whole
context is run again (the slow reference the cache must agree with, token for token).

The context window policy, the same for every position type: the model never sees
more than `block_size` tokens. When new tokens would overflow it, the oldest tokens
slide out: the first `pinned` tokens stay (a chat's fixed preamble), and of the rest
only the newest half window (or all the new tokens, if more) is kept and run through
the model again. The re-prefill is required for learned and sinusoidal positions,
whose position vectors are part of every cached key; for RoPE it would be possible
to rotate the cached keys instead, but those keys were computed while attending to
the tokens that slid out, so minigpt re-prefills there too: after a slide, the cached
and uncached paths both compute exactly what a fresh run over the kept tokens does.
Keeping half a window makes the re-prefill cost amortise to about one extra forward
position per generated token.
"""

from __future__ import annotations

import torch

from minigpt.errors import GenerationError
from minigpt.generation.memory import available_memory
from minigpt.kvcache import KVCache
from minigpt.model import GPT


class ModelContext:
    """Token ids (B, n) in the model's context, and with `use_cache` their keys/values."""

    def __init__(
        self,
        model: GPT,
        batch_size: int = 1,
        *,
        use_cache: bool = True,
        pinned: int = 0,
        capacity: int | None = None,
    ) -> None:
        """`capacity`: the most tokens the context will ever hold (default and at most
        block_size); a smaller cache is quicker to allocate."""
        self.model = model
        self.block_size = model.config.block_size
        if not 0 <= pinned <= self.block_size // 2:
            raise ValueError(f"pinned must be in [0, {self.block_size // 2}], got {pinned}")
        self.pinned = pinned
        device = model.device
        self.capacity = min(capacity or self.block_size, self.block_size)
        self.cache = None
        if use_cache:
            check_cache_fits(model, batch_size, self.capacity)
            self.cache = KVCache(model.config, batch_size, self.capacity, device, model.dtype)
        self.tokens = torch.empty(batch_size, 0, dtype=torch.long, device=device)  # (B, n)
        self.prefilled = 0  # positions run through the model so far (per row)
        self.slides = 0  # how often the oldest tokens slid out of the window

    @property
    def length(self) -> int:
        return self.tokens.size(1)

    @torch.inference_mode()
    def feed(self, new: torch.Tensor) -> torch.Tensor:
        """Append ids (B, T) to the context; logits (B, V) for the position after them."""
        run = new
        if self.length + new.size(1) > self.block_size:
            body = torch.cat((self.tokens, new), dim=1)[:, self.pinned :]  # (B, n + T - pin)
            keep = kept_on_slide(self.block_size - self.pinned, new.size(1))
            self.truncate(self.pinned)
            run = body[:, -keep:]  # (B, keep)
            self.slides += 1
        try:
            if self.cache is not None:
                logits = self.model(run, kv_cache=self.cache, last_only=True)  # (B, 1, V)
            else:
                context = torch.cat((self.tokens, run), dim=1)  # (B, n + T')
                logits = self.model(context, last_only=True)  # (B, 1, V)
        except BaseException:
            self.truncate(0)  # a half-done forward (Ctrl-C, error) leaves nothing to trust
            raise
        self.tokens = torch.cat((self.tokens, run), dim=1)
        self.prefilled += run.size(1)
        return logits[:, -1, :].float()  # (B, V)

    def truncate(self, n: int) -> None:
        """Keep only the first n tokens of the context."""
        self.tokens = self.tokens[:, :n]
        if self.cache is not None:
            self.cache.truncate(n)

    def sync(self, ids: list[int]) -> torch.Tensor:
        """Make the context hold exactly `ids` (batch 1), running only what is not there
        yet: the longest common prefix with the current context is kept. Returns the
        logits (1, V) after the last id. `ids` must fit in the window."""
        if not 0 < len(ids) <= self.block_size:
            raise ValueError(f"need 1..{self.block_size} ids, got {len(ids)}")
        held = self.tokens[0].tolist()
        same = 0
        while same < min(len(held), len(ids)) and held[same] == ids[same]:
            same += 1
        same = min(same, len(ids) - 1)  # the last id runs again: its logits are needed
        self.truncate(same)
        new = torch.tensor([ids[same:]], dtype=torch.long, device=self.tokens.device)
        return self.feed(new)

    def repeat(self, n: int) -> None:
        """Copy a batch-1 context into n rows: one prompt prefill shared by n samples."""
        self.tokens = self.tokens.repeat(n, 1)
        if self.cache is not None:
            check_cache_fits(self.model, n, self.capacity)
            self.cache.repeat(n)


def kept_on_slide(room: int, new: int) -> int:
    """How many of the newest ids a full window keeps when `new` ids join it: half the
    `room` (the window less its pinned ids), or all the new ids if more, at most all."""
    return min(room, max(room // 2, new))


def check_cache_fits(model: GPT, batch_size: int, capacity: int) -> None:
    """Refuse, with a hint, a KV cache for `batch_size` sequences of `capacity` tokens
    that free memory cannot hold: allocating it would get the process killed, not an
    error raised. Checked where the system says what is available (`memory`)."""
    config = model.config
    needed = 2 * config.n_layer * batch_size * capacity * config.kv_size  # keys, values
    needed *= model.dtype.itemsize
    free = available_memory(model.device)
    if free is not None and needed > free:
        raise GenerationError(
            f"out of memory: the KV cache for {batch_size} sequences needs "
            f"{needed / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB free; "
            "use fewer --num-samples"
        )
