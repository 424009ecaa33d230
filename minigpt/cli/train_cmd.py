"""`minigpt train`: turn options into configs, call `minigpt.train.train`, draw progress."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from minigpt.cli.app import app, stdout
from minigpt.cli.data_cmd import (
    EncodingOpt,
    TokenizerOpt,
    ValFractionOpt,
    VocabOpt,
    data_config_from,
)
from minigpt.config import (
    DEFAULT_PRESET,
    MLP_KINDS,
    NORM_KINDS,
    POS_ENCODINGS,
    PRESETS,
    DataConfig,
    GPTConfig,
    TrainConfig,
    parse_duration,
    preset,
)
from minigpt.data import Dataset, is_dataset_dir, load_dataset, prepare_dataset
from minigpt.errors import ConfigError, DataError
from minigpt.train import EvalInfo, RunInfo, StepInfo, TrainResult, train


def _opt(help: str, *names: str) -> Any:
    return typer.Option(*names, help=help, show_default=False)


@app.command("train")
def train_command(
    file: Annotated[Path, typer.Argument(help="A text file, or a dataset directory.")],
    # data
    tokenizer: TokenizerOpt = None,
    vocab_size: VocabOpt = None,
    val_fraction: ValFractionOpt = None,
    encoding: EncodingOpt = None,
    # model shape
    preset_name: Annotated[
        str, typer.Option("--preset", help=f"Model shape: {', '.join(PRESETS)}.")
    ] = DEFAULT_PRESET,
    n_layer: Annotated[int | None, _opt("Transformer blocks.", "--n-layer")] = None,
    n_head: Annotated[int | None, _opt("Attention heads per block.", "--n-head")] = None,
    n_embd: Annotated[int | None, _opt("Width of the residual stream.", "--n-embd")] = None,
    block_size: Annotated[int | None, _opt("Context length in tokens.", "--block-size")] = None,
    pos: Annotated[str | None, _opt(f"Positions: {', '.join(POS_ENCODINGS)}.", "--pos")] = None,
    norm: Annotated[str | None, _opt(f"Norm: {', '.join(NORM_KINDS)}.", "--norm")] = None,
    mlp: Annotated[str | None, _opt(f"Feed-forward: {', '.join(MLP_KINDS)}.", "--mlp")] = None,
    bias: Annotated[
        bool | None, _opt("Biases in linear layers and norms.", "--bias/--no-bias")
    ] = None,
    dropout: Annotated[float | None, _opt("Dropout probability.", "--dropout")] = None,
    tie: Annotated[
        bool | None, _opt("Share the embedding and unembedding matrix.", "--tie/--no-tie")
    ] = None,
    # optimisation
    batch_size: Annotated[int | None, _opt("Sequences per micro-batch.", "--batch-size")] = None,
    grad_accum: Annotated[int, typer.Option(help="Micro-batches per optimizer step.")] = 1,
    max_iters: Annotated[int | None, _opt("Optimizer steps.", "--max-iters")] = None,
    time_budget: Annotated[
        str | None, _opt("Wall-clock budget such as 90s or 3m; the LR schedule fits it.", "--time")
    ] = None,
    lr: Annotated[float | None, _opt("Peak learning rate.", "--lr")] = None,
    warmup: Annotated[int | None, _opt("Warm-up steps.", "--warmup")] = None,
    weight_decay: Annotated[float | None, _opt("AdamW weight decay.", "--weight-decay")] = None,
    grad_clip: Annotated[float | None, _opt("Max gradient norm (0: off).", "--grad-clip")] = None,
    eval_interval: Annotated[int | None, _opt("Steps between evals.", "--eval-interval")] = None,
    seed: Annotated[int, typer.Option(help="Seed for weights and batches.")] = 1337,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    precision: Annotated[str, typer.Option(help="auto, fp32 or bf16.")] = "auto",
    # output
    run: Annotated[str | None, _opt("Run name (default: file, tokenizer, time).", "--run")] = None,
    out: Annotated[Path, typer.Option(help="Where runs are written.")] = Path("checkpoints"),
    cache_dir: Annotated[Path, typer.Option(help="Tokenized dataset cache.")] = Path("data/cache"),
) -> None:
    """Train a GPT on a text file; checkpoints go to checkpoints/<run>/."""
    data_config = data_config_from(tokenizer, vocab_size, val_fraction, encoding)
    shape, train_fields = preset(preset_name)
    model_overrides = dict(
        n_layer=n_layer, n_head=n_head, n_embd=n_embd, block_size=block_size,
        pos_encoding=pos, norm=norm, mlp=mlp, bias=bias, dropout=dropout, tie_embeddings=tie,
    )  # fmt: skip
    shape.update({k: v for k, v in model_overrides.items() if v is not None})
    train_overrides = dict(
        batch_size=batch_size, lr=lr, warmup_iters=warmup, weight_decay=weight_decay,
        grad_clip=grad_clip, eval_interval=eval_interval,
    )  # fmt: skip
    budget = parse_duration(time_budget) if time_budget is not None else None
    train_fields.update({k: v for k, v in train_overrides.items() if v is not None})
    if max_iters is not None or budget is not None:
        train_fields["max_iters"] = max_iters  # None: the time budget alone ends the run
    train_config = TrainConfig(
        **train_fields, grad_accum=grad_accum, time_budget=budget, seed=seed, device=device,
        precision=precision,
    )  # fmt: skip
    GPTConfig(vocab_size=1, **shape)  # check the shape before any tokenizing
    stamp = time.strftime("%Y%m%d-%H%M%S")
    run_dir = out / (run or f"{file.stem}-{data_config.tokenizer}-{stamp}")
    if run_dir.exists() and any(run_dir.iterdir()):
        raise ConfigError(f"run directory {run_dir} already exists; choose another --run name")
    if is_dataset_dir(file) and any(
        v is not None for v in (tokenizer, vocab_size, val_fraction, encoding)
    ):
        raise ConfigError(
            f"{file} is a dataset directory, already tokenized; --tokenizer, --vocab-size, "
            "--val-fraction and --encoding apply to text files only"
        )
    dataset = _open_dataset(file, data_config, cache_dir)
    model_config = GPTConfig(vocab_size=dataset.tokenizer.vocab_size, **shape)
    console = stdout()
    reporter = RichReporter(console) if console.is_terminal else PlainReporter(console)
    try:
        train(model_config, train_config, dataset, run_dir, reporter)
    finally:
        reporter.close()


def _open_dataset(file: Path, data_config: DataConfig, cache_dir: Path) -> Dataset:
    if is_dataset_dir(file):
        return load_dataset(file)
    if file.is_dir():
        raise DataError(f"{file} is a directory but not a dataset (no meta.json)")
    with stdout().status(f"preparing {file} ({data_config.tokenizer} tokenizer)..."):
        return load_dataset(prepare_dataset(file, data_config, cache_dir))


# ---------------------------------------------------------------------------------
# Progress displays.


def describe_start(info: RunInfo) -> list[str]:
    counts = ", ".join(f"{k} {v:,}" for k, v in info.param_counts.items() if v)
    return [
        f"run        {info.run_dir}",
        f"device     {info.device}, {info.precision}",
        f"model      {info.num_params:,} parameters ({counts})",
        f"data       {info.train_tokens:,} train / {info.val_tokens:,} val tokens, "
        f"{info.tokens_per_step:,} tokens per step",
    ]


def describe_eval(info: EvalInfo) -> str:
    what = "final val (whole split)" if info.final else "val"
    return (
        f"step {info.step:>6}  {what}: loss {info.val_loss:.4f} nats/token, "
        f"{info.val_bpb:.4f} bits/byte"
    )


def describe_end(result: TrainResult) -> str:
    return (
        f"done: {result.steps} steps in {result.elapsed:.1f} s "
        f"({result.tokens_per_s:,.0f} tokens/s); "
        f"val {result.val_loss:.4f} nats/token = {result.val_bpb:.4f} bits/byte; "
        f"checkpoint {result.run_dir}"
    )


class RichReporter:
    """A live progress bar with step, loss, val loss, val bpb, tokens/s and ETA."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            transient=False,
        )
        self.task = self.progress.add_task("train", total=1000, stats="")
        self.val = "val -"

    def start(self, info: RunInfo) -> None:
        for line in describe_start(info):
            self.console.print(line)
        self.progress.start()

    def step(self, info: StepInfo) -> None:
        stats = (
            f"step {info.step}  loss {info.loss:.3f}  {self.val}  {info.tokens_per_s:,.0f} tok/s"
        )
        self.progress.update(self.task, completed=int(info.progress * 1000), stats=stats)

    def eval(self, info: EvalInfo) -> None:
        self.val = f"val {info.val_loss:.3f} ({info.val_bpb:.3f} bpb)"
        self.progress.console.print(describe_eval(info))

    def end(self, result: TrainResult) -> None:
        self.progress.update(self.task, completed=1000)
        self.progress.stop()
        self.console.print(describe_end(result))

    def close(self) -> None:
        """Give the terminal back (cursor, line) even when training failed."""
        self.progress.stop()


class PlainReporter:
    """Plain log lines, for pipes and files."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.last_print = 0.0

    def start(self, info: RunInfo) -> None:
        for line in describe_start(info):
            self.console.print(line)

    def step(self, info: StepInfo) -> None:
        if info.elapsed - self.last_print >= 5.0 or info.progress >= 1.0:
            self.last_print = info.elapsed
            self.console.print(
                f"step {info.step:>6}  loss {info.loss:.4f}  lr {info.lr:.2e}  "
                f"{info.tokens_per_s:,.0f} tok/s  {info.progress:.0%}"
            )

    def eval(self, info: EvalInfo) -> None:
        self.console.print(describe_eval(info))

    def end(self, result: TrainResult) -> None:
        self.console.print(describe_end(result))

    def close(self) -> None:
        pass
