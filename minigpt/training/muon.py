"""Muon for the hidden matrices, AdamW for everything else, in one optimizer.

Muon (Jordan et al., 2024; used by modded-nanogpt and nanochat) takes the momentum of
a weight matrix's gradient and replaces it by the nearest semi-orthogonal matrix (all
singular values 1), computed by five Newton-Schulz iterations: every direction of the
update moves by the same amount, however unevenly the gradient was spread over them.
It suits the 2-D matrices inside the blocks (query/key/value, output, MLP); the
embedding (tied to the unembedding), norms and biases keep AdamW.

A parameter that stacks several matrices (the fused [W^Q; W^K; W^V], SwiGLU's
[W^gate; W^up]) is orthogonalised part by part, as separate matrices would be: treated
whole, its parts share one set of directions, and on the default model 300 steps ended
at 2.56 bits per byte against 2.44 part by part. Matrices of one shape are
orthogonalised together in one batched product, which on a CPU costs less than one
product per matrix. A run whose matmuls are bf16 (autocast) runs Newton-Schulz in bf16
too, as Muon's reference does: where bf16 matmuls are fast (chosen by measurement), that
cost a third of fp32's on the default model (5 ms against 15.5 ms a step on a 2-core
AMD EPYC with AVX-512 bf16), and the directions differ from fp32's by about 1%. Muon's
matrices take decoupled weight decay like AdamW's: without it the default model trained
for 1000 steps reached 2.18 bits per byte, with it 2.14.

One optimizer holds both kinds as parameter groups (a group with "muon": True is
Muon's), so the training step, the gradient scaler and checkpoints treat it as any
other. Each group's rate is the schedule's rate times its "lr_scale": Muon's groups run
at `muon_lr / lr` times the AdamW rate, so one schedule drives both.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

# Quintic Newton-Schulz coefficients from Muon's reference implementation: they push
# every singular value of a normalised matrix towards 1 in five iterations.
NS_COEFFS = (3.4445, -4.7750, 2.0315)
NS_STEPS = 5
MUON_KEYS = ("momentum_buffer",)
ADAM_KEYS = ("exp_avg", "exp_avg_sq", "step")  # torch.optim.AdamW's names


def orthogonalize(
    g: torch.Tensor, steps: int = NS_STEPS, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """The semi-orthogonal matrix nearest to g (..., m, n), approximately: U V^T of its
    SVD, for each matrix of a batch; computed in `dtype`, returned in g's."""
    a, b, c = NS_COEFFS
    wide = g.size(-2) <= g.size(-1)
    x = (g if wide else g.mT).to(dtype)  # (..., r, s) with r <= s: the Gram matrix is the small one
    x = x / (torch.linalg.matrix_norm(x, keepdim=True) + 1e-7)  # singular values <= 1
    x = x.reshape(-1, *x.shape[-2:])  # (n, r, s): one batch, so the products fuse their sums
    for _ in range(steps):
        gram = x @ x.mT  # (n, r, r)
        poly = torch.baddbmm(gram, gram, gram, beta=b, alpha=c)  # b * gram + c * gram^2
        x = torch.baddbmm(x, poly, x, beta=a)  # a * x + poly @ x
    x = x.reshape(g.shape if wide else g.mT.shape).to(g.dtype)
    return x if wide else x.mT


class MuonAdamW(torch.optim.Optimizer):
    """Muon on the groups marked "muon", AdamW (decoupled weight decay) on the rest."""

    def __init__(
        self,
        groups: Iterable[dict[str, Any]],
        lr: float,
        betas: tuple[float, float],
        momentum: float = 0.95,
        eps: float = 1e-8,
        ns_dtype: torch.dtype = torch.float32,
    ) -> None:
        self.ns_dtype = ns_dtype
        defaults = dict(lr=lr, betas=betas, eps=eps, momentum=momentum, weight_decay=0.0,
                        muon=False, lr_scale=1.0, splits=None)  # fmt: skip
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # noqa: ARG002 (no closure: one pass)
        by_shape: dict[torch.Size, list[tuple[torch.Tensor, torch.Tensor, float]]] = {}
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if group["muon"]:
                    for part in self._muon_parts(p, group):
                        by_shape.setdefault(part[1].shape, []).append(part)
                else:
                    self._adamw(p, group)
        for shape, parts in by_shape.items():
            stacked = torch.stack([g for _, g, _ in parts])  # (n, m, k)
            directions = orthogonalize(stacked, dtype=self.ns_dtype)
            scale = max(1.0, shape[0] / shape[1]) ** 0.5  # tall matrices move as much
            for (part, _, lr), direction in zip(parts, directions, strict=True):
                part.add_(direction, alpha=-lr * scale)

    def _muon_parts(
        self, p: torch.Tensor, group: dict[str, Any]
    ) -> list[tuple[torch.Tensor, torch.Tensor, float]]:
        """Update p's momentum and decay p; (view of p, its Nesterov momentum, rate) for
        each of the matrices p stacks (group["splits"]: their rows; p whole if None)."""
        state = self.state[p]
        if not state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"]
        buf.lerp_(p.grad, 1 - group["momentum"])
        nesterov = p.grad.lerp(buf, group["momentum"])
        lr = group["lr"]
        p.mul_(1 - lr * group["weight_decay"])
        splits = group["splits"] or [p.size(0)]
        return [(v, g, lr) for v, g in zip(p.split(splits), nesterov.split(splits), strict=True)]

    def _adamw(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """AdamW's update, as torch.optim.AdamW computes it."""
        state = self.state[p]
        if not state:
            state.update(step=torch.zeros(()), exp_avg=torch.zeros_like(p),
                         exp_avg_sq=torch.zeros_like(p))  # fmt: skip
        beta1, beta2 = group["betas"]
        state["step"] += 1
        t = float(state["step"])
        state["exp_avg"].lerp_(p.grad, 1 - beta1)
        state["exp_avg_sq"].mul_(beta2).addcmul_(p.grad, p.grad, value=1 - beta2)
        denom = (state["exp_avg_sq"] / (1 - beta2**t)).sqrt_().add_(group["eps"])
        lr = group["lr"]
        p.mul_(1 - lr * group["weight_decay"])
        p.addcdiv_(state["exp_avg"], denom, value=-lr / (1 - beta1**t))


def state_keys(group: dict[str, Any]) -> tuple[str, ...]:
    """The per-parameter state tensors a group of any of minigpt's optimizers keeps."""
    return MUON_KEYS if group.get("muon") else ADAM_KEYS
