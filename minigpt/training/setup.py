"""What a run trains with, built once: device, precision, seeds, model, optimizer, and
the description of it all that the run reports first.

Seeding order matters for an exact resume and for several processes: every rank seeds
`seed` before building the model (the same initial weights everywhere), then
`seed + 1 + rank` (dropout masks differ by rank). Batches come from a generator of
their own, seeded with `seed`, so evaluation and sampling never shift them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from minigpt.checkpoint import load_weights_into
from minigpt.config import GPTConfig, TrainConfig
from minigpt.data.dataset import SPLITS, Dataset, check_context_fits
from minigpt.device import (
    choose_device,
    keep_freed_memory,
    matmul_peak,
    needs_grad_scaler,
    set_threads,
)
from minigpt.errors import ConfigError
from minigpt.model import GPT
from minigpt.parameters import count_parameters, flops_per_token
from minigpt.training.compiling import Limits, choose_for_every_rank, compile_key
from minigpt.training.distributed import DistContext
from minigpt.training.init_from import Start, fitted_weights
from minigpt.training.optim import make_optimizer
from minigpt.training.precision import Autocast, RunPrecision, choose_run_precision
from minigpt.training.reporting import RunInfo
from minigpt.training.sizing import dataset_size_warning


@dataclass
class Setup:
    """One rank's run: its settings, data and place, and the live objects it trains."""

    config: TrainConfig
    dataset: Dataset
    run_dir: Path
    ctx: DistContext
    device: torch.device
    precision: RunPrecision  # the precision chosen (its name, as snapshots record it), and why
    compile: bool
    compiled: str  # whether torch.compile is used, and why
    step_key: dict[str, Any]  # what this run's step timings are kept under (`compiling`)
    model: GPT  # the raw model: what is saved, evaluated and sampled
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None  # fp16 only
    data_gen: torch.Generator  # draws the training batches
    threads: int  # the CPU threads torch computes with in this process
    init_from: dict[str, Any] | None  # the model the run started from (`Start.record`)

    @property
    def dtype(self) -> torch.dtype:
        """The autocast dtype (float32: none)."""
        return self.precision.dtype


def build_setup(
    model_config: GPTConfig,
    config: TrainConfig,
    dataset: Dataset,
    run_dir: Path,
    ctx: DistContext,
    began: Autocast | None = None,
    start: Start | None = None,
    init_from: dict[str, Any] | None = None,
    done: tuple[int, float] = (0, 0.0),
) -> Setup:
    """Check the model fits the data, then build everything on this rank's device.
    `began`: the precision a resumed run was trained in, which auto keeps. `start`: the
    weights a new run starts from (`init_from`: a resumed run's record of them)."""
    vocab = dataset.tokenizer.vocab_size
    if model_config.vocab_size is None:
        raise ConfigError(
            "the model config has no vocab_size; complete it with the tokenizer's, e.g. "
            "dataclasses.replace(config, vocab_size=dataset.tokenizer.vocab_size)"
        )
    if model_config.vocab_size < vocab:
        raise ConfigError(
            f"vocab_size {model_config.vocab_size} is smaller than the tokenizer's {vocab}"
        )
    check_context_fits(dataset, model_config.block_size)
    threads = set_threads(config.threads)
    keep_freed_memory()  # a step's activations reuse the last step's memory
    device = device_for(config.device, ctx)
    torch.manual_seed(config.seed)  # the same initial weights on every rank
    model = GPT(model_config).to(device)
    if start is not None:
        load_weights_into(model, fitted_weights(start, model_config))
        init_from = start.record()
    torch.manual_seed(config.seed + 1 + ctx.rank)  # dropout masks differ by rank
    # measured on the model itself where that is the only way to know (a CPU)
    precision = choose_run_precision(model, config.precision, config.batch_size, ctx, began=began)
    model.set_attention(precision.attention)
    step_key = compile_key(device, model_config, config, precision.name, ctx.world_size)
    left = Limits.left(config, *done)
    compile, compiled = choose_for_every_rank(device, step_key, config.compile, left, ctx)
    optimizer = make_optimizer(model, config, device, precision.dtype)
    scaler = torch.amp.GradScaler(device.type) if needs_grad_scaler(precision.dtype) else None
    data_gen = torch.Generator().manual_seed(config.seed)
    return Setup(
        config=config, dataset=dataset, run_dir=run_dir, ctx=ctx, device=device,
        precision=precision, compile=compile, compiled=compiled, step_key=step_key,
        model=model, optimizer=optimizer, scaler=scaler, data_gen=data_gen, threads=threads,
        init_from=init_from,
    )  # fmt: skip


def device_for(requested: str, ctx: DistContext) -> torch.device:
    """The device of this rank: its own GPU under torchrun, else the asked-for one."""
    device = choose_device(requested)
    if ctx.enabled and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def wrapped_model(setup: Setup) -> torch.nn.Module:
    """The model the steps run: compiled and/or DistributedDataParallel when chosen."""
    model: torch.nn.Module = setup.model
    if setup.compile:
        model = torch.compile(model)
    if setup.ctx.enabled:
        ids = [setup.device.index] if setup.device.type == "cuda" else None
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return model


def describe_run(
    setup: Setup,
    tokens_per_step: int,
    resumed_step: int | None = None,
    changes: dict[str, list[Any]] | None = None,
) -> RunInfo:
    """What the run reports first, with the matmul peak that MFU is against."""
    counts = count_parameters(setup.model)
    n_params = sum(counts.values())
    dataset = setup.dataset
    train_tokens = dataset.num_tokens("train")
    max_block = min(dataset.num_tokens(split) for split in SPLITS) - 1
    warning = None  # a model started from keeps its shape: no other size to suggest
    if setup.init_from is None:
        warning = dataset_size_warning(train_tokens, setup.model.config, n_params, max_block)
    return RunInfo(
        run_dir=setup.run_dir,
        device=str(setup.device),
        precision=setup.precision.line,
        compiled=setup.compiled,
        model=setup.model.config,
        num_params=n_params,
        param_counts=counts,
        tokens_per_step=tokens_per_step,
        train_tokens=train_tokens,
        val_tokens=dataset.num_tokens("val"),
        world_size=setup.ctx.world_size,
        threads=setup.threads,
        flops_per_token=flops_per_token(setup.model.config),
        peak_flops=matmul_peak(setup.device, setup.dtype),
        resumed_step=resumed_step,
        changes=changes or {},
        warnings=[warning] if warning else [],
        init_from=setup.init_from,
    )
