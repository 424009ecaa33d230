"""Training throughput: `minigpt.training.trainer` against a plain PyTorch loop, and torch.compile.

Three ways to train the same model shape on the same batches for the same number of
steps, measured one after the other, --repeats times each, in rotation:

- plain:   a bare loop (random windows, forward, cross-entropy, backward, clip,
           AdamW step): the same math with no framework around it;
- minigpt: `minigpt.training.trainer.train` with evaluations and checkpoints pushed past the
           end, so what differs from "plain" is the loop's own bookkeeping (the
           non-finite checks, logging, the per-step collective, progress);
- compile: `minigpt.training.trainer.train` with compile="on".

Tokens/s are steady-state: counted from step --warmup-steps on, so the first steps
(and torch.compile's compilation) are reported separately as start-up seconds.

    python benchmarks/train_speed.py --text ../shared/data/shakespeare.txt
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from minigpt.config import DataConfig, GPTConfig, TrainConfig
from minigpt.data.batches import get_batch
from minigpt.data.cache import prepare_dataset
from minigpt.data.dataset import Dataset
from minigpt.model import GPT
from minigpt.presets import DEFAULT_PRESET, preset
from minigpt.training.optim import make_optimizer
from minigpt.training.reporting import EvalInfo, RunInfo, StepInfo, TrainResult
from minigpt.training.trainer import train


class Clock:
    """A reporter that notes when each logged step ended (seconds since start)."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.ends: dict[int, float] = {}

    def start(self, info: RunInfo) -> None:
        self.t0 = time.perf_counter()

    def step(self, info: StepInfo) -> None:
        self.ends[info.step] = time.perf_counter() - self.t0

    def eval(self, info: EvalInfo) -> None: ...
    def end(self, result: TrainResult) -> None: ...


def steady(ends: dict[int, float], warm: int, steps: int, tokens_per_step: int) -> tuple:
    """(tokens/s from step `warm` to the end, seconds to reach step `warm`)."""
    return (steps - warm) * tokens_per_step / (ends[steps] - ends[warm]), ends[warm]


def run_plain(model_config: GPTConfig, cfg: TrainConfig, data: Dataset, warm: int) -> tuple:
    torch.manual_seed(cfg.seed)
    model = GPT(model_config)
    opt = make_optimizer(model, cfg, torch.device("cpu"))
    gen = torch.Generator().manual_seed(cfg.seed)
    train_data = data.splits["train"]
    t0, ends = time.perf_counter(), {}
    for step in range(1, cfg.max_iters + 1):
        x, y = get_batch(train_data, cfg.batch_size, model_config.block_size, gen)
        logits = model(x)  # (B, T, V)
        loss = F.cross_entropy(logits.flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # the loop reads the loss every step, as minigpt does
        ends[step] = time.perf_counter() - t0
    return steady(ends, warm, cfg.max_iters, cfg.batch_size * model_config.block_size)


def run_minigpt(
    model_config: GPTConfig, cfg: TrainConfig, data: Dataset, warm: int, out: Path
) -> tuple:
    clock = Clock()
    train(model_config, cfg, data, out, clock)
    return steady(clock.ends, warm, cfg.max_iters, cfg.batch_size * model_config.block_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ways", default="plain,minigpt,compile")
    args = parser.parse_args()
    if args.steps <= args.warmup_steps:
        raise SystemExit("--steps must exceed --warmup-steps")

    with tempfile.TemporaryDirectory() as tmp:
        data = prepare_dataset(args.text, DataConfig(), Path(tmp) / "cache")
        shape, train_fields = preset(DEFAULT_PRESET)
        model_config = GPTConfig(vocab_size=data.tokenizer.vocab_size, **shape)
        far = args.steps + 1  # no evaluation or checkpoint inside the measured steps
        train_fields.update(
            max_iters=args.steps, eval_interval=far, save_every=far, log_interval=1,
            sample_every=0, compile="off",
        )  # fmt: skip
        cfg = TrainConfig(**train_fields)
        compiled = TrainConfig(**{**train_fields, "compile": "on"})
        print(
            f"model {DEFAULT_PRESET}: {shape}, batch {cfg.batch_size}, {args.steps} steps, "
            f"{torch.get_num_threads()} threads, torch {torch.__version__}"
        )
        results: dict[str, list[tuple]] = {w: [] for w in args.ways.split(",")}
        for r in range(args.repeats):
            for way in results:
                out = Path(tmp) / f"{way}-{r}"
                if way == "plain":
                    res = run_plain(model_config, cfg, data, args.warmup_steps)
                else:
                    config = compiled if way == "compile" else cfg
                    res = run_minigpt(model_config, config, data, args.warmup_steps, out)
                results[way].append(res)
                print(f"  {way:<8} run {r + 1}: {res[0]:>9,.0f} tok/s, start-up {res[1]:.2f} s")

    print(f"\n{'way':<8} {'median tok/s':>13} {'vs plain':>9} {'start-up s':>11}")
    base = statistics.median(t for t, _ in results["plain"]) if "plain" in results else None
    for way, runs in results.items():
        tps = statistics.median(t for t, _ in runs)
        startup = statistics.median(s for _, s in runs)
        ratio = f"{tps / base:.3f}x" if base else "-"
        print(f"{way:<8} {tps:>13,.0f} {ratio:>9} {startup:>11.2f}")


if __name__ == "__main__":
    main()
