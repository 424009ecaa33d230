"""The KV caches: keys and values of tokens already seen, so decoding is one token a
step. `KVCache` holds B sequences that advance together (a prompt, n samples of it);
`RowsKVCache` holds sequences of different lengths, each at its own position
(continuous batching). `GPT.forward` writes into either."""

from __future__ import annotations

import torch

from minigpt.config import GPTConfig


class KVCache:
    """Pre-allocated keys and values for every layer, for `batch_size` sequences.

    `pos` tokens are filled. `GPT.forward` writes the new tokens' keys and values of
    each layer, then advances `pos` once all layers are done.
    """

    def __init__(
        self,
        config: GPTConfig,
        batch_size: int,
        max_len: int | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.max_len = max_len or config.block_size
        # nkv = config.kv_heads: with grouped-query attention the cache holds the key/value
        # heads only, n_head / n_kv_head times less than one per query head.
        shape = (config.n_layer, batch_size, config.kv_heads, self.max_len, config.head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, B, nkv, max_len, hs)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.pos = 0

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store this step's (B, nkv, T, hs) keys/values; return all keys/values so far."""
        end = self.pos + k.size(2)
        if end > self.max_len:
            raise ValueError(f"KV cache overflow: {end} tokens > capacity {self.max_len}")
        self.k[layer, :, :, self.pos : end] = k
        self.v[layer, :, :, self.pos : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]  # (B, nkv, end, hs)

    def advance(self, n: int) -> None:
        self.pos += n

    def truncate(self, n: int) -> None:
        """Forget everything after the first n tokens (their slots get overwritten)."""
        self.pos = min(self.pos, n)

    def repeat(self, n: int) -> None:
        """Copy batch row 0 into n rows: one prefill shared by n sequences."""
        self.k = self.k[:, :1].repeat(1, n, 1, 1, 1)  # (L, n, nkv, max_len, hs)
        self.v = self.v[:, :1].repeat(1, n, 1, 1, 1)


class RowsKVCache:
    """Keys and values for up to `slots` sequences of different lengths, decoded
    together one token each a step (continuous batching: a server's requests come and
    go). The first `rows` slots are in use; row i holds `lengths[i]` tokens, and its
    next token sits at position `lengths[i]`.

    A row is filled by a prefill through `view(i)`, a `KVCache` over its slot (batch 1,
    so a prompt runs exactly as it would alone). In a decode step (`GPT.forward` with
    one token per row) each row writes its new key and value at its own position and
    attends to its own tokens only (`mask`)."""

    def __init__(
        self,
        config: GPTConfig,
        slots: int,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> None:
        self.max_len = config.block_size
        shape = (config.n_layer, slots, config.kv_heads, self.max_len, config.head_size)
        self.k = torch.zeros(shape, device=device, dtype=dtype)  # (L, S, nkv, block, hs)
        self.v = torch.zeros(shape, device=device, dtype=dtype)
        self.lengths = torch.zeros(slots, dtype=torch.long, device=device)  # (S,)
        self.rows = 0
        self.mask: torch.Tensor | None = None  # (B, 1, 1, n) during a decode step
        self._at = torch.empty(0)  # (B, nkv, 1, hs) each row's position, for scatter_

    def view(self, first: int, n: int = 1) -> KVCache:
        """An empty `KVCache` over slots first..first+n-1: a prefill through it fills
        them (then `set_length`)."""
        view = KVCache.__new__(KVCache)
        view.max_len, view.pos = self.max_len, 0
        view.k = self.k[:, first : first + n]  # (L, n, nkv, block, hs), a view
        view.v = self.v[:, first : first + n]
        return view

    def set_length(self, i: int, n: int) -> None:
        self.lengths[i] = n

    def copy(self, src: int, dst: int) -> None:
        """Slot dst takes slot src's tokens (n samples of one prompt; filling a gap)."""
        n = int(self.lengths[src])
        self.k[:, dst, :, :n] = self.k[:, src, :, :n]
        self.v[:, dst, :, :n] = self.v[:, src, :, :n]
        self.lengths[dst] = n

    def positions(self) -> torch.Tensor:
        """(B,) where each row's next token sits."""
        return self.lengths[: self.rows]

    def begin(self, width: int) -> None:
        """Before a decode step: each row attends to its own tokens and the new one; keys
        are read up to `width` (the longest row's length after the step)."""
        at = self.positions()  # (B,)
        keys = torch.arange(width, device=self.lengths.device)  # (n,)
        self.mask = (keys <= at.unsqueeze(1)).view(self.rows, 1, 1, width)
        _, _, nkv, _, hs = self.k.shape
        self._at = at.view(self.rows, 1, 1, 1).expand(self.rows, nkv, 1, hs)

    def update(
        self, layer: int, k: torch.Tensor, v: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Store each row's new (B, nkv, 1, hs) key/value at its position; return the
        keys/values (B, nkv, n, hs) the step reads."""
        assert self.mask is not None, "begin() a decode step first"
        keys, values = self.k[layer, : self.rows], self.v[layer, : self.rows]
        keys.scatter_(2, self._at, k)  # row b's new key at position lengths[b]
        values.scatter_(2, self._at, v)
        n = self.mask.size(-1)
        return keys[:, :, :n], values[:, :, :n]

    def advance(self, n: int) -> None:
        self.lengths[: self.rows] += n
        self.mask = None
