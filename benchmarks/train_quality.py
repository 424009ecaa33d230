"""Validation bits per byte reached by `minigpt train` in a wall-clock budget.

Reproduces the default-settings figure (`minigpt train data/shakespeare.txt --time 2m`)
and compares it with nanoGPT's CPU recipe run through the same trainer. Each variant
runs --repeats times, one after the other (never in parallel: they would share the
cores); the table gives the median.

    python benchmarks/train_quality.py --text ../shared/data/shakespeare.txt --time 2m
    python benchmarks/train_quality.py --variants default --repeats 1 \
        --set n_layer=6 --set lr=2e-3     # try a change to the default
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

from minigpt.config import (
    DEFAULT_PRESET,
    DataConfig,
    GPTConfig,
    TrainConfig,
    parse_duration,
    preset,
)
from minigpt.data import load_dataset, prepare_dataset
from minigpt.train import train

# nanoGPT README, "I only have a macbook": 4 layers, 4 heads, 128 wide, context 64,
# batch 12, 2000 iterations, lr 1e-3 decaying to 1e-4 over 2000 steps, dropout 0.
NANOGPT_CPU = {
    "model": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0),
    "train": dict(batch_size=12, lr=1e-3, min_lr_ratio=0.1, warmup_iters=100, beta2=0.99),
}


def variant(name: str, overrides: dict[str, Any]) -> tuple[GPTConfig, TrainConfig]:
    model_fields = {f.name for f in fields(GPTConfig)}
    if name == "nanogpt-cpu":
        m, t = dict(NANOGPT_CPU["model"]), dict(NANOGPT_CPU["train"])
        t["max_iters"] = 2000
    else:
        m, t = preset(DEFAULT_PRESET)
    for key, value in overrides.items():
        (m if key in model_fields else t)[key] = value
    return GPTConfig(vocab_size=1, **m), TrainConfig(**t)


def parse_value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, default=Path("data/shakespeare.txt"))
    parser.add_argument("--time", default="2m", help="budget for the default variant")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variants", default="default,nanogpt-cpu")
    parser.add_argument("--tokenizer", default=None, help="override the default tokenizer")
    parser.add_argument("--set", action="append", default=[], help="field=value override")
    args = parser.parse_args()
    overrides = dict(kv.split("=", 1) for kv in args.set)
    overrides = {k: parse_value(v) for k, v in overrides.items()}
    tokenizer = args.tokenizer or DataConfig().tokenizer
    vocab = overrides.pop("vocab_size", None)  # the bpe tokenizer's
    data_config = DataConfig(tokenizer=tokenizer, vocab_size=vocab)
    with tempfile.TemporaryDirectory() as tmp:
        dataset = load_dataset(prepare_dataset(args.text, data_config, Path(tmp) / "cache"))
        rows = []
        for name in args.variants.split(","):
            model_cfg, train_cfg = variant(name, overrides)
            vocab = dataset.tokenizer.vocab_size
            model_cfg = GPTConfig(**{**asdict(model_cfg), "vocab_size": vocab})
            if name == "default":
                train_cfg = TrainConfig(
                    **{**asdict(train_cfg), "max_iters": None,
                       "time_budget": parse_duration(args.time)}
                )  # fmt: skip
            results = []
            for r in range(args.repeats):
                t0 = time.perf_counter()
                res = train(model_cfg, train_cfg, dataset, Path(tmp) / f"{name}-{r}")
                wall = time.perf_counter() - t0
                results.append((res.val_bpb, res.val_loss, wall, res.tokens_per_s, res.steps))
                print(
                    f"{name} run {r + 1}: val {res.val_bpb:.4f} bpb ({res.val_loss:.4f} nats/token)"
                    f", {res.steps} steps, {res.tokens_per_s:,.0f} tokens/s, {wall:.1f} s wall",
                    flush=True,
                )
            med = [statistics.median(col) for col in zip(*results, strict=True)]
            rows.append((name, *med))
        print(f"\ntokenizer {tokenizer}, overrides {overrides or 'none'}")
        print(f"medians of {args.repeats} run(s)")
        print(f"{'variant':<14}{'val bpb':>9}{'nats/tok':>10}{'wall s':>8}{'tok/s':>9}{'steps':>7}")
        for name, bpb, loss, wall, tps, steps in rows:
            print(f"{name:<14}{bpb:>9.4f}{loss:>10.4f}{wall:>8.1f}{tps:>9,.0f}{steps:>7.0f}")


if __name__ == "__main__":
    main()
