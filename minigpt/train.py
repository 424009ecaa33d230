"""The training loop: AdamW, the LR schedule, evaluation, checkpointing.

`train()` runs one run and reports progress to a `Reporter` (the CLI draws it); it
never prints. Validation is reported in nats per token and in bits per byte (summed
token loss / (ln 2 x UTF-8 bytes of the targets)), which compares runs across
tokenizers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.nn.functional as F

from minigpt.checkpoint import LATEST, save_checkpoint
from minigpt.config import GPTConfig, TrainConfig, to_dict
from minigpt.data import Dataset, check_context_fits, get_batch, iter_windows
from minigpt.device import autocast, choose_device, choose_precision
from minigpt.errors import ConfigError, TrainingError
from minigpt.model import GPT, count_parameters

FINAL_EVAL_MAX_TOKENS = 1 << 20  # the final validation pass reads at most this many tokens


# ---------------------------------------------------------------------------------
# Optimizer and schedule.


def make_optimizer(model: GPT, config: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices (incl. embeddings) only, not norms or biases."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": config.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(
        groups, lr=config.lr, betas=(config.beta1, config.beta2), fused=device.type == "cuda"
    )


def lr_at(step: int, progress: float, config: TrainConfig) -> float:
    """Cosine decay from lr to lr * min_lr_ratio over the run, scaled by a linear
    warm-up over the first warmup_iters steps.

    `progress` in [0, 1] is the share of the run done: steps / max_iters, or elapsed
    time / time budget, so a wall-clock budget gets a complete schedule. The warm-up
    counts steps in both cases; a run shorter than it never reaches the peak.
    """
    warm = min(1.0, (step + 1) / (config.warmup_iters + 1))
    cosine = 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))
    return config.lr * warm * (config.min_lr_ratio + (1.0 - config.min_lr_ratio) * cosine)


# ---------------------------------------------------------------------------------
# Evaluation.


@torch.no_grad()
def evaluate(
    model: GPT,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    byte_lengths: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
) -> tuple[float, float]:
    """(nats per token, bits per byte) over the targets of `batches`.

    Bits per byte = summed loss / (ln 2 x UTF-8 bytes of the targets).
    """
    loss_sum, n_tokens, n_bytes = 0.0, 0, 0
    was_training = model.training
    model.eval()
    for x, y in batches:
        x, y = x.to(device), y.to(device)
        with autocast(device, dtype):
            logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="sum")
        loss_sum += loss.item()
        n_tokens += y.numel()
        n_bytes += int(byte_lengths[y].sum())
    model.train(was_training)
    return loss_sum / n_tokens, loss_sum / (math.log(2) * max(1, n_bytes))


def estimate_val(
    model: GPT,
    data: np.ndarray,
    config: TrainConfig,
    byte_lengths: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    seed: int,
) -> tuple[float, float]:
    """Validation loss and bpb on eval_iters random batches (the same ones every call)."""
    gen = torch.Generator().manual_seed(seed)
    block_size = model.config.block_size
    batches = (
        get_batch(data, config.batch_size, block_size, gen) for _ in range(config.eval_iters)
    )
    return evaluate(model, batches, byte_lengths, device, dtype)


def evaluate_split(
    model: GPT,
    data: np.ndarray,
    batch_size: int,
    byte_lengths: torch.Tensor,
    device: torch.device,
    dtype: torch.dtype,
    max_tokens: int = FINAL_EVAL_MAX_TOKENS,
) -> tuple[float, float]:
    """Loss and bpb over every target of a split (its first max_tokens tokens)."""
    batches = iter_windows(data[:max_tokens], model.config.block_size, batch_size)
    return evaluate(model, batches, byte_lengths, device, dtype)


# ---------------------------------------------------------------------------------
# Reporting, and the loop itself.


@dataclass
class RunInfo:
    run_dir: Path
    device: str
    precision: str
    num_params: int
    param_counts: dict[str, int]
    tokens_per_step: int
    train_tokens: int
    val_tokens: int


@dataclass
class StepInfo:
    step: int
    loss: float
    lr: float
    tokens_per_s: float
    elapsed: float
    progress: float  # share of the run done, 0..1


@dataclass
class EvalInfo:
    step: int
    val_loss: float
    val_bpb: float
    final: bool = False  # the full pass over the validation split at the end


@dataclass
class TrainResult:
    run_dir: Path
    steps: int
    elapsed: float
    val_loss: float
    val_bpb: float
    tokens_per_s: float


class Reporter(Protocol):
    def start(self, info: RunInfo) -> None: ...
    def step(self, info: StepInfo) -> None: ...
    def eval(self, info: EvalInfo) -> None: ...
    def end(self, result: TrainResult) -> None: ...


class SilentReporter:
    """A Reporter that shows nothing (library use, tests)."""

    def start(self, info: RunInfo) -> None: ...
    def step(self, info: StepInfo) -> None: ...
    def eval(self, info: EvalInfo) -> None: ...
    def end(self, result: TrainResult) -> None: ...


class MetricsLog:
    """metrics.jsonl: one JSON object per logged step or evaluation."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by close()

    def write(self, row: dict[str, Any]) -> None:
        self._file.write(json.dumps(row) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()


def train(
    model_config: GPTConfig,
    train_config: TrainConfig,
    dataset: Dataset,
    run_dir: Path,
    reporter: Reporter | None = None,
) -> TrainResult:
    """Train a new model on `dataset`, checkpointing to `run_dir/latest`."""
    reporter = reporter or SilentReporter()
    tok = dataset.tokenizer
    if model_config.vocab_size < tok.vocab_size:
        raise ConfigError(
            f"vocab_size {model_config.vocab_size} is smaller than the tokenizer's {tok.vocab_size}"
        )
    check_context_fits(dataset, model_config.block_size)
    if train_config.threads is not None:
        torch.set_num_threads(train_config.threads)
    device = choose_device(train_config.device)
    dtype, precision = choose_precision(device, train_config.precision)
    torch.manual_seed(train_config.seed)
    model = GPT(model_config).to(device)
    optimizer = make_optimizer(model, train_config, device)
    data_gen = torch.Generator().manual_seed(train_config.seed)
    byte_lengths = torch.tensor(tok.token_byte_lengths(), device=device)
    train_data, val_data = dataset.splits["train"], dataset.splits["val"]
    tokens_per_step = train_config.batch_size * train_config.grad_accum * model_config.block_size
    counts = count_parameters(model)
    reporter.start(
        RunInfo(
            run_dir=run_dir,
            device=str(device),
            precision=precision,
            num_params=sum(counts.values()),
            param_counts=counts,
            tokens_per_step=tokens_per_step,
            train_tokens=dataset.num_tokens("train"),
            val_tokens=dataset.num_tokens("val"),
        )
    )
    log = MetricsLog(run_dir / "metrics.jsonl")

    def save(step: int, val_loss: float, val_bpb: float) -> None:
        extra = {
            "step": step,
            "val_loss": val_loss,
            "val_bpb": val_bpb,
            "train": to_dict(train_config),
            "dataset": dataset.meta,
        }
        save_checkpoint(run_dir / LATEST, model, tok, extra)

    model.train()
    start = time.perf_counter()
    last_log, last_log_step = start, 0
    step = 0
    progress = 0.0
    try:
        while progress < 1.0:
            lr = lr_at(step, progress, train_config)
            micro_batches = [
                get_batch(train_data, train_config.batch_size, model_config.block_size, data_gen)
                for _ in range(train_config.grad_accum)
            ]
            loss = optimizer_step(model, optimizer, micro_batches, lr, train_config, device, dtype)
            check_finite(loss, "training loss", step + 1, lr, run_dir)
            step += 1
            elapsed = time.perf_counter() - start
            progress = run_progress(step, elapsed, train_config)
            if step % train_config.log_interval == 0 or progress >= 1.0:
                now = time.perf_counter()
                tps = (step - last_log_step) * tokens_per_step / max(now - last_log, 1e-9)
                last_log, last_log_step = now, step
                info = StepInfo(step, loss, lr, tps, elapsed, progress)
                log.write(
                    {
                        "step": step,
                        "loss": info.loss,
                        "lr": lr,
                        "tokens_per_s": tps,
                        "elapsed": round(elapsed, 3),
                    }
                )
                reporter.step(info)
            if step % train_config.eval_interval == 0 and progress < 1.0:
                val_loss, val_bpb = estimate_val(
                    model,
                    val_data,
                    train_config,
                    byte_lengths,
                    device,
                    dtype,
                    train_config.seed + 1,
                )
                check_finite(val_loss, "validation loss", step, lr, run_dir)
                log.write({"step": step, "val_loss": val_loss, "val_bpb": val_bpb})
                reporter.eval(EvalInfo(step, val_loss, val_bpb))
                save(step, val_loss, val_bpb)
        elapsed = time.perf_counter() - start
        val_loss, val_bpb = evaluate_split(
            model, val_data, train_config.batch_size, byte_lengths, device, dtype
        )
        log.write({"step": step, "val_loss": val_loss, "val_bpb": val_bpb, "final": True})
        reporter.eval(EvalInfo(step, val_loss, val_bpb, final=True))
        save(step, val_loss, val_bpb)
    finally:
        log.close()
    result = TrainResult(
        run_dir=run_dir,
        steps=step,
        elapsed=elapsed,
        val_loss=val_loss,
        val_bpb=val_bpb,
        tokens_per_s=step * tokens_per_step / max(elapsed, 1e-9),
    )
    reporter.end(result)
    return result


def optimizer_step(
    model: GPT,
    optimizer: torch.optim.Optimizer,
    micro_batches: list[tuple[torch.Tensor, torch.Tensor]],
    lr: float,
    config: TrainConfig,
    device: torch.device,
    dtype: torch.dtype,
) -> float:
    """One optimizer step on gradients summed over the micro-batches; their mean loss."""
    for group in optimizer.param_groups:
        group["lr"] = lr
    loss_sum = 0.0
    for x, y in micro_batches:
        with autocast(device, dtype):
            logits = model(x.to(device))  # (B, T, V)
            loss = F.cross_entropy(logits.float().flatten(0, 1), y.to(device).flatten())
        (loss / len(micro_batches)).backward()
        loss_sum += loss.item()
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss_sum / len(micro_batches)


def check_finite(value: float, what: str, step: int, lr: float, run_dir: Path) -> None:
    """Stop a diverged run before it logs or saves NaN; the last checkpoint stays."""
    if not math.isfinite(value):
        raise TrainingError(
            f"the {what} became {value} at step {step}: training diverged; try a lower --lr "
            f"(it was {lr:.2g} here) or --precision fp32. The last checkpoint in {run_dir} "
            "is unchanged"
        )


def run_progress(step: int, elapsed: float, config: TrainConfig) -> float:
    """Share of the run done: the larger of the step and time shares that apply."""
    shares = [0.0]
    if config.max_iters is not None:
        shares.append(step / config.max_iters)
    if config.time_budget is not None:
        shares.append(elapsed / config.time_budget)
    return max(shares)
