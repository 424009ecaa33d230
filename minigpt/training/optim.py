"""The optimizer and the learning-rate schedule.

AdamW (the default) decays matrices (embeddings included) but not norms or biases;
`--optimizer muon` gives the blocks' matrices to Muon (`minigpt.training.muon`). The learning
rate warms up linearly to `lr`, then follows, over the rest of the run, either a cosine
from `lr` down to `lr * min_lr_ratio`, or warm-up/stable/decay ("wsd"): flat at `lr`,
then a linear decay over the last `decay_fraction` of it. After warm-up the schedule is
a function of the share of the run done, so a wall-clock budget gets a complete
schedule; with `--time` that share is time, so the rate per step follows throughput.
"""

from __future__ import annotations

import math

import torch

from minigpt.config import TrainConfig
from minigpt.model import GPT
from minigpt.parameters import fused_rows
from minigpt.training.muon import MuonAdamW

BLOCKS = "h."  # GPT's transformer blocks: the parameters Muon may take


def make_optimizer(
    model: GPT, config: TrainConfig, device: torch.device, matmul_dtype: torch.dtype = torch.float32
) -> torch.optim.Optimizer:
    """The optimizer `config.optimizer` names over `model`'s trainable parameters.

    "adamw": AdamW with weight decay on matrices (incl. embeddings), not norms or biases.
    "muon": Muon on the 2-D matrices inside the blocks (at `muon_lr`, decayed as AdamW's,
    each matrix of a fused parameter on its own, in bf16 where `matmul_dtype`, the run's
    autocast dtype, is bf16), AdamW as above on the embedding, norms and biases
    (`minigpt.training.muon`).
    """
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    vectors = [p for _, p in named if p.dim() < 2]
    if config.optimizer == "muon":
        by_splits: dict[tuple[int, ...] | None, list[torch.Tensor]] = {}
        for n, p in named:
            if p.dim() >= 2 and n.startswith(BLOCKS):
                by_splits.setdefault(fused_rows(model.config, n), []).append(p)
        others = [p for n, p in named if p.dim() >= 2 and not n.startswith(BLOCKS)]
        muon_scale = config.muon_lr / config.lr
        groups = [
            *({"params": ps, "muon": True, "lr_scale": muon_scale, "splits": splits,
               "weight_decay": config.weight_decay} for splits, ps in by_splits.items()),
            {"params": others, "weight_decay": config.weight_decay},
            {"params": vectors, "weight_decay": 0.0},
        ]  # fmt: skip
        ns_dtype = torch.bfloat16 if matmul_dtype == torch.bfloat16 else torch.float32
        return MuonAdamW(
            groups, lr=config.lr, betas=(config.beta1, config.beta2), ns_dtype=ns_dtype
        )
    matrices = [p for _, p in named if p.dim() >= 2]
    groups = [
        {"params": matrices, "weight_decay": config.weight_decay},
        {"params": vectors, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=config.lr, betas=(config.beta1, config.beta2), fused=device.type == "cuda"
    )


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """The schedule's rate for this step, times each group's own scale (Muon's groups)."""
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)


def lr_at(
    step: int, progress: float, config: TrainConfig, warmup_end: float | None = None
) -> float:
    """The learning rate of step `step` (0-based) when `progress` of the run is done.

    `progress` in [0, 1] is steps / max_iters, or elapsed time / time budget. Warm-up
    counts steps: it rises linearly to exactly `lr` at step `warmup_iters` (as nanoGPT's
    `get_lr`), and a run shorter than it never reaches the peak. The decay then starts
    from `lr` and spans the rest of the run, from `warmup_end` (the share of the run done
    when warm-up ended; by default warmup_iters / max_iters) to the end.
    """
    if step < config.warmup_iters:
        return config.lr * (step + 1) / (config.warmup_iters + 1)
    start = warmup_share(config) if warmup_end is None else warmup_end
    done = 1.0 if start >= 1.0 else min(1.0, max(0.0, (progress - start) / (1.0 - start)))
    if config.schedule == "wsd":
        stable = 1.0 - config.decay_fraction
        shape = 1.0 if done <= stable else 1.0 - (done - stable) / config.decay_fraction
    else:
        shape = 0.5 * (1.0 + math.cos(math.pi * done))
    return config.lr * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * shape)


def warmup_share(config: TrainConfig) -> float:
    """The share of a step-limited run that warm-up takes (0 without a step limit)."""
    return min(1.0, config.warmup_iters / config.max_iters) if config.max_iters else 0.0


FINAL_EVAL_SHARE = 0.05  # of a time budget, the final evaluation's longest ...
FINAL_EVAL_MAX_S = 30.0  # ... up to this many seconds
FINAL_EVAL_MARGIN = 1.5  # the reserve: the timed pass's estimate times this, ...
FINISH_S = 0.5  # ... plus the last saves and the exit


def final_eval_seconds(config: TrainConfig) -> float | None:
    """How long the final evaluation of a timed run may take (None: no time budget)."""
    if config.time_budget is None:
        return None
    return min(FINAL_EVAL_MAX_S, FINAL_EVAL_SHARE * config.time_budget)


def time_reserve(config: TrainConfig, startup: float, final_eval: float) -> float:
    """Seconds of a time budget kept off the training loop: the start-up already spent
    (tokenizing, building the model) and what comes after the loop: the final
    evaluation (`final_eval`: its seconds as estimated from one timed batch, with a
    margin, at most its longest) and the last saves and the exit."""
    longest = final_eval_seconds(config)
    if longest is None:
        return 0.0
    return startup + min(longest, FINAL_EVAL_MARGIN * final_eval) + FINISH_S


def run_progress(step: int, elapsed: float, config: TrainConfig, reserve: float = 0.0) -> float:
    """Share of the run done: the larger of the step and time shares that apply. The
    time share counts the loop's seconds against the budget less `reserve`."""
    shares = [0.0]
    if config.max_iters is not None:
        shares.append(step / config.max_iters)
    if config.time_budget is not None:
        loop_budget = config.time_budget - reserve
        shares.append(elapsed / loop_budget if loop_budget > 0 else 1.0)
    return max(shares)
