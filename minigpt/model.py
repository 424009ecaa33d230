"""The decoder-only GPT: attention, MLP, Block and GPT (positions are
`minigpt.positional`, the KV caches `minigpt.kvcache`, what a traced pass records
`minigpt.trace`).

Read it top to bottom: small pieces first, then `Block`, then `GPT`. The model only
computes: no I/O, no printing, no optimizer. `GPT.forward(idx, kv_cache=None)` always
returns logits; the caller computes the loss. `GPT.forward(idx, trace=Trace())` also
records what `minigpt.inspect` shows (attention, the residual stream); without a trace
the forward pass is the fused one, untouched.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from minigpt.config import GPTConfig
from minigpt.kvcache import KVCache, RowsKVCache
from minigpt.positional import apply_rope, rope_cos_sin, sinusoidal_table
from minigpt.trace import Trace, repeat_kv, traced_attention

# How a training pass may compute attention (`GPT.set_attention`): a speed choice only.
# On an AMD EPYC with AVX-512 bf16, batch 8 x 128, 4 heads of 32, one layer's forward
# and backward took 2.2 ms in fp32 fused, 4.6 ms in bf16 fused, 1.0 ms as bf16 matmuls.
ATTENTION_WAYS = ("fused", "fp32", "matmul")

# ---------------------------------------------------------------------------------
# The pieces of a block.


def make_norm(config: GPTConfig) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(config.n_embd, eps=config.norm_eps)
    return nn.LayerNorm(config.n_embd, eps=config.norm_eps, bias=config.bias)


class CausalSelfAttention(nn.Module):
    """Multi-head scaled dot-product attention with a causal mask.

    softmax(Q K^T / sqrt(d_k)) V in each of n_head heads of size n_embd / n_head; the
    heads are concatenated and mixed by the output projection W^O (`c_proj`). With
    grouped-query attention (n_kv_head < n_head) there are only n_kv_head key and value
    heads, each shared by n_head / n_kv_head consecutive query heads.
    """

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.n_head = config.n_head
        self.n_kv_head = config.kv_heads
        self.head_size = config.head_size
        self.n_embd = config.n_embd
        self.kv_size = config.kv_size  # n_kv_head * head_size
        self.dropout = config.dropout
        # Query, key and value projections fused into one matrix:
        # (n_embd -> n_embd + 2 * kv_size), rows [Q; K; V]; 3 * n_embd without GQA.
        self.c_attn = nn.Linear(config.n_embd, config.n_embd + 2 * self.kv_size, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)  # W^O
        self.resid_dropout = nn.Dropout(config.dropout)
        # A speed choice, not part of the model: how a training pass attends (one of
        # ATTENTION_WAYS; measured per machine and shape by `minigpt.training.precision`,
        # set by `GPT.set_attention`).
        self.attention = "fused"

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        kv_cache: KVCache | RowsKVCache | None,
        layer: int,
        trace: Trace | None = None,
    ) -> torch.Tensor:
        B, T, C = x.size()
        nh, nkv, hs = self.n_head, self.n_kv_head, self.head_size
        q, k, v = self.c_attn(x).split((C, self.kv_size, self.kv_size), dim=2)
        q = q.view(B, T, nh, hs).transpose(1, 2)  # (B, nh, T, hs)
        k = k.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        v = v.view(B, T, nkv, hs).transpose(1, 2)  # (B, nkv, T, hs)
        if rope is not None:
            q, k = apply_rope(q, *rope), apply_rope(k, *rope)
        dropout_p = self.dropout if self.training else 0.0
        if isinstance(kv_cache, RowsKVCache):  # one token per row, each at its own position
            k, v = kv_cache.update(layer, k, v)  # (B, nkv, n, hs)
            y = F.scaled_dot_product_attention(
                q, k, v, attn_mask=kv_cache.mask, enable_gqa=self.n_kv_head != self.n_head
            )
            return self._merge(y)
        past = kv_cache.pos if kv_cache is not None else 0
        if kv_cache is not None:
            k, v = kv_cache.update(layer, k, v)  # (B, nkv, past + T, hs)
        if trace is not None:
            y = traced_attention(q, k, v, trace)
        elif self.attention == "fp32" and q.dtype != torch.float32:
            with torch.autocast(q.device.type, enabled=False):  # autocast would cast back
                y = self._sdpa(q.float(), k.float(), v.float(), past, dropout_p).to(q.dtype)
        elif self.attention == "matmul" and past == 0:
            y = matmul_attention(q, k, v, dropout_p)
        else:
            y = self._sdpa(q, k, v, past, dropout_p)
        return self._merge(y)

    def _merge(self, y: torch.Tensor) -> torch.Tensor:
        """The heads' outputs (B, nh, T, hs) side by side, mixed by W^O: (B, T, C)."""
        B, _, T, _ = y.size()
        y = y.transpose(1, 2).contiguous().view(B, T, self.n_embd)  # (B, T, nh * hs)
        return self.resid_dropout(self.c_proj(y))

    def _sdpa(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, past: int, dropout_p: float
    ) -> torch.Tensor:
        """The fused attention of q (B, nh, T, hs) over k, v (B, nkv, past + T, hs)."""
        T = q.size(2)
        # Grouped-query attention inside SDPA, no copies of k and v: on CPU a decode step
        # of its attention takes about half the time of repeat_kv then SDPA (8.8 vs 21 us,
        # 4 heads, 2 kv heads, 32 keys). Plain attention leaves the flag off (its default).
        gqa = self.n_kv_head != self.n_head
        if past == 0:
            # The whole sequence at once: query t sees keys 0..t.
            return F.scaled_dot_product_attention(
                q, k, v, is_causal=True, dropout_p=dropout_p, enable_gqa=gqa
            )
        if T == 1:
            # One new token after a cached prefix: it may see every key, so no mask.
            return F.scaled_dot_product_attention(q, k, v, dropout_p=dropout_p, enable_gqa=gqa)
        # A chunk after a cached prefix: query i sits at position past + i and sees
        # keys 0..past + i (the causal mask aligned to the bottom-right corner).
        q_pos = torch.arange(past, past + T, device=q.device).unsqueeze(1)  # (T, 1)
        k_pos = torch.arange(past + T, device=q.device).unsqueeze(0)  # (1, past + T)
        mask = k_pos <= q_pos  # (T, past + T), True = may attend
        return F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=dropout_p, enable_gqa=gqa
        )


def matmul_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, dropout_p: float
) -> torch.Tensor:
    """Causal attention of q (B, nh, T, hs) over k, v (B, nkv, T, hs) as explicit batched
    matmuls: softmax(Q K^T / sqrt(d_k) + mask) V, the mask -inf above the diagonal.

    The same values as the fused kernel, but it keeps the (B, nh, T, T) weights for the
    backward pass, and its matmuls run in the autocast dtype: on a CPU with bf16 units,
    for short contexts, much faster than the fused kernel's (see ATTENTION_WAYS).
    """
    B, nh, T, hs = q.size()
    k, v = repeat_kv(k, nh), repeat_kv(v, nh)  # (B, nh, T, hs)
    mask = torch.full((T, T), float("-inf"), dtype=q.dtype, device=q.device).triu(1)
    scores = torch.baddbmm(
        mask.expand(B * nh, T, T),  # (B * nh, T, T)
        q.reshape(B * nh, T, hs),
        k.reshape(B * nh, T, hs).transpose(1, 2),  # (B * nh, hs, T)
        alpha=1.0 / math.sqrt(hs),
    )  # (B * nh, T, T): mask + scaled scores
    weights = scores.softmax(dim=-1)  # (B * nh, T, T)
    if dropout_p > 0:
        weights = F.dropout(weights, dropout_p)
    return (weights @ v.reshape(B * nh, T, hs)).view(B, nh, T, hs)


class MLP(nn.Module):
    """The feed-forward network: up-projection, non-linearity, down-projection."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.swiglu = config.mlp == "swiglu"
        hidden = config.hidden_size
        # SwiGLU needs two up-projections (gate and value); they are fused into one matrix.
        n_up = 2 * hidden if self.swiglu else hidden
        self.c_fc = nn.Linear(config.n_embd, n_up, bias=config.bias)  # up-projection
        self.c_proj = nn.Linear(hidden, config.n_embd, bias=config.bias)  # down-projection
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)  # (B, T, n_up)
        if self.swiglu:
            gate, up = h.chunk(2, dim=-1)  # (B, T, hidden) each
            h = F.silu(gate) * up
        else:
            h = F.gelu(h, approximate="tanh")  # GPT-2's GELU
        return self.dropout(self.c_proj(h))


class Block(nn.Module):
    """One pre-norm transformer block: x + attn(norm(x)), then x + mlp(norm(x))."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = make_norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = make_norm(config)
        self.mlp = MLP(config)

    def forward(
        self,
        x: torch.Tensor,
        rope: tuple[torch.Tensor, torch.Tensor] | None,
        kv_cache: KVCache | RowsKVCache | None,
        layer: int,
        trace: Trace | None = None,
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope, kv_cache, layer, trace)  # residual connection
        x = x + self.mlp(self.ln_2(x))  # residual connection
        return x


# ---------------------------------------------------------------------------------
# The whole model.


class GPT(nn.Module):
    """Token embedding + positions -> n_layer blocks -> final norm -> logits."""

    def __init__(self, config: GPTConfig) -> None:
        super().__init__()
        if config.vocab_size is None:
            raise ValueError("GPTConfig.vocab_size is None: complete it from the tokenizer")
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)  # one vector per token
        self.wpe: nn.Embedding | None = None
        if config.pos_encoding == "learned":
            self.wpe = nn.Embedding(config.block_size, config.n_embd)  # one per position
        elif config.pos_encoding == "sinusoidal":
            # Fixed, not learned: persistent=False keeps it out of the weights file.
            table = sinusoidal_table(config.block_size, config.n_embd)
            self.register_buffer("sinusoidal", table, persistent=False)
        elif config.pos_encoding == "rope":
            cos, sin = rope_cos_sin(config.block_size, config.head_size, config.rope_theta)
            self.register_buffer("rope_cos", cos, persistent=False)
            self.register_buffer("rope_sin", sin, persistent=False)
        self.drop = nn.Dropout(config.dropout)
        self.h = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = make_norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)  # unembedding
        if config.tie_embeddings:
            self.lm_head.weight = self.wte.weight  # one matrix embeds and unembeds
        self.apply(self._init_weights)
        # GPT-2: scale the projections that write into the residual stream by
        # 1/sqrt(2 * n_layer), so the stream's variance does not grow with depth.
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @property
    def device(self) -> torch.device:
        """Where the weights live: the device token ids must be on."""
        return self.wte.weight.device

    @property
    def dtype(self) -> torch.dtype:
        """The weights' floating-point type (what a KV cache for this model holds)."""
        return self.wte.weight.dtype

    @property
    def attention(self) -> str:
        """How the blocks attend, one of ATTENTION_WAYS (`set_attention`)."""
        return self.h[0].attn.attention if len(self.h) else "fused"

    def set_attention(self, way: str) -> None:
        """How the blocks attend in a forward pass without a cache or trace: "fused"
        (PyTorch's fused kernel in the autocast dtype), "fp32" (the fused kernel in fp32
        under autocast) or "matmul" (`matmul_attention`). The values are the same up
        to rounding; which is fastest depends on the machine and the shapes."""
        if way not in ATTENTION_WAYS:
            raise ValueError(f"unknown attention way {way!r}; one of {ATTENTION_WAYS}")
        for block in self.h:
            block.attn.attention = way

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def forward(
        self,
        idx: torch.Tensor,
        kv_cache: KVCache | RowsKVCache | None = None,
        last_only: bool = False,
        trace: Trace | None = None,
    ) -> torch.Tensor:
        """Logits (B, T, vocab_size) for token ids idx (B, T).

        With a `kv_cache`, idx holds only the new tokens; they sit at positions
        kv_cache.pos .. kv_cache.pos + T - 1 and attend to everything cached before them.
        `last_only` returns the last position's logits (B, 1, vocab_size): all that
        generation reads, and the unembedding of a long prompt is a large matmul.
        `trace` records attention and the residual stream (see `Trace`). With a
        `RowsKVCache`, idx (B, 1) holds one new token per row, each at its row's position.
        """
        B, T = idx.size()
        x = self.wte(idx)  # (B, T, C)
        pos = self._positions(idx, kv_cache)  # (T,), or (B, 1) one per row
        rope = None
        if self.config.pos_encoding == "learned":
            assert self.wpe is not None
            x = x + self.wpe(pos)  # (T, C) broadcast over the batch, or (B, 1, C)
        elif self.config.pos_encoding == "sinusoidal":
            # The paper scales token embeddings by sqrt(d_model) so the fixed [-1, 1]
            # position signal does not drown them.
            x = x * math.sqrt(self.config.n_embd) + self.sinusoidal[pos]
        else:
            cos, sin = self.rope_cos[pos], self.rope_sin[pos]  # (T, hs/2) or (B, 1, hs/2)
            if pos.dim() == 2:  # one position per row: broadcast over the heads
                cos, sin = cos.unsqueeze(1), sin.unsqueeze(1)  # (B, 1, 1, hs/2)
            rope = (cos, sin)
        x = self.drop(x)
        if trace is not None:
            trace.residual.append(x)
        for layer, block in enumerate(self.h):
            x = block(x, rope, kv_cache, layer, trace)
            if trace is not None:
                trace.residual.append(x)
        if kv_cache is not None:
            kv_cache.advance(T)
        if last_only:
            x = x[:, -1:, :]  # (B, 1, C)
        x = self.ln_f(x)
        return self.lm_head(x)  # (B, T, vocab_size)

    def _positions(self, idx: torch.Tensor, kv_cache: KVCache | RowsKVCache | None) -> torch.Tensor:
        """The positions of idx's tokens: (T,) after the cached ones, or with a
        `RowsKVCache` (B, 1), each row's own (and its decode step begun)."""
        B, T = idx.size()
        block = self.config.block_size
        if isinstance(kv_cache, RowsKVCache):
            if T != 1 or B != kv_cache.rows:
                raise ValueError(
                    f"a decode step takes one token for each of the {kv_cache.rows} rows"
                )
            pos = kv_cache.positions()  # (B,)
            width = int(pos.max()) + 1 if B else 1
            if width > block:
                raise ValueError(f"sequence of {width} tokens exceeds block_size {block}")
            kv_cache.begin(width)
            return pos.unsqueeze(1)  # (B, 1)
        start = kv_cache.pos if kv_cache is not None else 0
        if start + T > block:
            raise ValueError(f"sequence of {start + T} tokens exceeds block_size {block}")
        return torch.arange(start, start + T, device=idx.device)  # (T,)
