"""Muon for the hidden matrices, AdamW for everything else, in one optimizer.

Muon (Jordan et al., 2024; used by modded-nanogpt and nanochat) takes the momentum of
a weight matrix's gradient and replaces it by the nearest semi-orthogonal matrix (all
singular values 1), computed by five Newton-Schulz iterations: every direction of the
update moves by the same amount, however unevenly the gradient was spread over them.
It suits the 2-D matrices inside the blocks (query/key/value, output, MLP); the
embedding (tied to the unembedding), norms and biases keep AdamW.

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


def orthogonalize(g: torch.Tensor, steps: int = NS_STEPS) -> torch.Tensor:
    """The semi-orthogonal matrix nearest to g (m, n), approximately: U V^T of its SVD."""
    a, b, c = NS_COEFFS
    wide = g.size(0) <= g.size(1)
    x = g if wide else g.T  # (r, s) with r <= s: the Gram matrix below is the small one
    x = x / (x.norm() + 1e-7)  # singular values now at most 1
    for _ in range(steps):
        gram = x @ x.T  # (r, r)
        x = a * x + (b * gram + c * (gram @ gram)) @ x
    return x if wide else x.T


class MuonAdamW(torch.optim.Optimizer):
    """Muon on the groups marked "muon", AdamW (decoupled weight decay) on the rest."""

    def __init__(
        self,
        groups: Iterable[dict[str, Any]],
        lr: float,
        betas: tuple[float, float],
        momentum: float = 0.95,
        eps: float = 1e-8,
    ) -> None:
        defaults = dict(lr=lr, betas=betas, eps=eps, momentum=momentum, weight_decay=0.0,
                        muon=False, lr_scale=1.0)  # fmt: skip
        super().__init__(groups, defaults)

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # noqa: ARG002 (no closure: one pass)
        for group in self.param_groups:
            update = self._muon if group["muon"] else self._adamw
            for p in group["params"]:
                if p.grad is not None:
                    update(p, group)

    def _muon(self, p: torch.Tensor, group: dict[str, Any]) -> None:
        """Nesterov momentum, orthogonalised, scaled so tall matrices move as much."""
        state = self.state[p]
        if not state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"]
        buf.lerp_(p.grad, 1 - group["momentum"])
        direction = orthogonalize(p.grad.lerp(buf, group["momentum"]))
        lr = group["lr"]
        p.mul_(1 - lr * group["weight_decay"])
        p.add_(direction, alpha=-lr * max(1.0, p.size(0) / p.size(1)) ** 0.5)

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
