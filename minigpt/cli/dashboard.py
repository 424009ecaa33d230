"""What `minigpt train` shows while it runs.

On a terminal, a live dashboard: a progress bar with ETA, loss and val loss with
sparklines, val bits per byte, learning rate, tokens/s, MFU against the measured
matmul peak, skipped steps, and now and then a short sample. Evaluations scroll above
it. When stdout is not a terminal (a log file, a pipe), plain log lines instead.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from minigpt.config import GPTConfig
from minigpt.training.reporting import EvalInfo, RunInfo, StepInfo, StopReason, TrainResult

SPARK = "▁▂▃▄▅▆▇█"
PLAIN_EVERY_S = 5.0  # seconds between plain progress lines


def sparkline(values: Iterable[float], width: int = 32) -> str:
    """The last `width` values as a row of block characters, low to high."""
    vals = list(values)[-width:]
    if not vals:
        return ""
    lo, hi = min(vals), max(vals)
    span = hi - lo or 1.0
    return "".join(SPARK[min(len(SPARK) - 1, int((v - lo) / span * len(SPARK)))] for v in vals)


def describe_model(config: GPTConfig, num_params: int) -> str:
    """The architecture on one line: blocks, attention, width, context, positions, norm,
    feed-forward, embedding, parameters."""
    tied = "tied" if config.tie_embeddings else "untied"
    heads = f"{config.n_head} heads"
    if config.kv_heads != config.n_head:  # grouped-query attention
        heads += f" ({config.kv_heads} key/value)"
    return (
        f"{config.n_layer} layers, {heads}, width {config.n_embd}, "
        f"context {config.block_size}, {config.pos_encoding} positions, {config.norm}, "
        f"{config.mlp} MLP (hidden {config.hidden_size}), {tied} embedding, "
        f"{num_params:,} parameters"
    )


def describe_start(info: RunInfo) -> list[str]:
    counts = ", ".join(f"{k} {v:,}" for k, v in info.param_counts.items() if v)
    procs = f", {info.world_size} processes" if info.world_size > 1 else ""
    threads = f"{info.threads} CPU thread{'s' if info.threads != 1 else ''}"
    threads += " each" if info.world_size > 1 else ""
    lines = [
        f"run        {info.run_dir}",
        f"device     {info.device}{procs}, {threads}, {info.precision}, {info.compiled}",
        f"model      {describe_model(info.model, info.num_params)}",
        f"parameters {counts}",
        f"data       {info.train_tokens:,} train / {info.val_tokens:,} val tokens, "
        f"{info.tokens_per_step:,} tokens per step",
        f"compute    {info.flops_per_token:,} FLOP per token; measured matmul peak "
        f"{info.peak_flops / 1e9:,.0f} GFLOP/s per device (MFU is against it)",
    ]
    if info.init_from is not None:
        origin, step = info.init_from.get("origin"), info.init_from.get("step")
        what = f"a minigpt run at step {step}" if origin == "minigpt" else f"a {origin} model"
        lines.append(f"start      {info.init_from.get('source')} ({what}), val loss first")
    if info.resumed_step is not None:
        changed = ", ".join(f"{k} {old} -> {new}" for k, (old, new) in info.changes.items())
        lines.append(
            f"resumed    at step {info.resumed_step}" + (f"; changed: {changed}" if changed else "")
        )
    lines += [f"warning    {w}" for w in info.warnings]
    return lines


def header_grid(lines: list[str]) -> Table:
    """The header on a terminal: each value wraps under itself, beside its label."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(style="dim", no_wrap=True)
    grid.add_column()
    for line in lines:
        label, _, value = line.partition(" ")
        grid.add_row(label, Text(value.lstrip()))
    return grid


def describe_eval(info: EvalInfo) -> str:
    """One evaluation. The best is judged by val loss (what best/ keeps), so the marker
    names it and stands beside the loss: bits per byte, measured over other bytes (the
    whole split at the end), can be worse where the loss is better."""
    what = "final val (whole split)" if info.final else "val"
    best = " (best val loss so far)" if info.best else ""
    return (
        f"step {info.step:>6}  {what}: loss {info.val_loss:.4f} nats/token{best}, "
        f"{info.val_bpb:.4f} bits/byte"
    )


def describe_end(result: TrainResult) -> str:
    how = {
        None: "done",
        StopReason.INTERRUPTED: "stopped (interrupted)",
        StopReason.STOP_AT: "paused",
        StopReason.EARLY_STOP: "stopped early (val loss stopped improving)",
    }[result.stopped]
    val = (
        f"val {result.val_loss:.4f} nats/token = {result.val_bpb:.4f} bits/byte; "
        if result.val_loss is not None and result.val_bpb is not None
        else ""
    )
    skipped = f", {result.skipped_steps} skipped" if result.skipped_steps else ""
    paused = (StopReason.INTERRUPTED, StopReason.STOP_AT)
    resume = "; continue with --resume" if result.stopped in paused else ""
    return (
        f"{how}: {result.steps} steps{skipped} in {result.elapsed:.1f} s "
        f"({result.tokens_per_s:,.0f} tokens/s); {val}checkpoint {result.run_dir}{resume}"
    )


class RichReporter:
    """The live dashboard for a terminal."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.progress = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            TextColumn("{task.percentage:>3.0f}%"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        self.task = self.progress.add_task("train", total=1000)
        self.losses: deque[float] = deque(maxlen=64)
        self.val_losses: deque[float] = deque(maxlen=64)
        self.last_step: StepInfo | None = None
        self.last_eval: EvalInfo | None = None
        self.sample: tuple[int, str] | None = None
        self.live = Live(self._render(), console=console, refresh_per_second=4)

    def _render(self) -> Group:
        parts: list = [self.progress]
        s, e = self.last_step, self.last_eval
        if s is not None:
            loss = f"{s.loss:.4f}" if s.loss is not None else "skipped"
            line = Text.assemble(
                ("step ", "dim"), f"{s.step:<8}",
                ("loss ", "dim"), f"{loss:<8} ", (sparkline(self.losses), "cyan"),
            )  # fmt: skip
            parts.append(line)
        if e is not None:
            parts.append(
                Text.assemble(
                    ("val  ", "dim"),
                    f"{e.val_loss:.4f}  ",
                    (f"{e.val_bpb:.3f} bpb ", "bold"),
                    (sparkline(self.val_losses, 16), "magenta"),
                )  # fmt: skip
            )
        if s is not None:
            skipped = f"   skipped {s.skipped_steps}" if s.skipped_steps else ""
            parts.append(
                Text(
                    f"lr {s.lr:.2e}   {s.tokens_per_s:,.0f} tok/s   MFU {s.mfu:.1%}{skipped}",
                    style="dim",
                )
            )
        if self.sample is not None:
            step, text = self.sample
            parts.append(Panel(Text(text.strip()[:400]), title=f"sample at step {step}"))
        return Group(*parts)

    def notice(self, message: str) -> None:
        self.console.print(Text(message, style="yellow"))

    def start(self, info: RunInfo) -> None:
        self.console.print(header_grid(describe_start(info)))
        self.live.start()

    def activity(self, doing: str, progress: float) -> None:
        self.progress.update(self.task, description=doing, completed=int(progress * 1000))

    def step(self, info: StepInfo) -> None:
        self.last_step = info
        if info.loss is not None:
            self.losses.append(info.loss)
        self.progress.update(self.task, completed=int(info.progress * 1000))
        self.live.update(self._render())

    def eval(self, info: EvalInfo) -> None:
        self.last_eval = info
        self.val_losses.append(info.val_loss)
        if info.sample is not None:
            self.sample = (info.step, info.sample)
        self.console.print(describe_eval(info))
        self.live.update(self._render())

    def end(self, result: TrainResult) -> None:
        if result.stopped is None:
            self.progress.update(self.task, completed=1000)
        self.close()
        self.console.print(describe_end(result))

    def close(self) -> None:
        """Give the terminal back (cursor, line) even when training failed."""
        self.live.update(self._render())
        self.live.stop()


class PlainReporter:
    """Log lines for files and pipes: every few seconds, and at each evaluation."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.last_print = float("-inf")
        self.last_activity = float("-inf")

    def notice(self, message: str) -> None:
        self.console.print(message)

    def start(self, info: RunInfo) -> None:
        for line in describe_start(info):
            self.console.print(line)

    def activity(self, doing: str, progress: float) -> None:
        """Outside training steps (the final evaluation): a line at once, then one every
        few seconds."""
        now = time.monotonic()
        if doing != "train" and now - self.last_activity >= PLAIN_EVERY_S:
            self.last_activity = now
            self.console.print(f"{doing}...")

    def step(self, info: StepInfo) -> None:
        if info.elapsed - self.last_print >= PLAIN_EVERY_S or info.progress >= 1.0:
            self.last_print = info.elapsed
            loss = f"{info.loss:.4f}" if info.loss is not None else "skipped"
            self.console.print(
                f"step {info.step:>6}  loss {loss}  lr {info.lr:.2e}  "
                f"{info.tokens_per_s:,.0f} tok/s  MFU {info.mfu:.1%}  {info.progress:.0%}"
            )

    def eval(self, info: EvalInfo) -> None:
        self.console.print(describe_eval(info))
        if info.sample is not None:
            self.console.print(f"sample: {info.sample.strip()[:200]!r}")

    def end(self, result: TrainResult) -> None:
        self.console.print(describe_end(result))

    def close(self) -> None:
        pass
