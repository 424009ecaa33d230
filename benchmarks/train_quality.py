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
from dataclasses import fields
from pathlib import Path
from typing import Any

from minigpt.cli.settings import parse_duration
from minigpt.config import DataConfig, GPTConfig, TrainConfig
from minigpt.data.cache import prepare_dataset
from minigpt.presets import DEFAULT_PRESET, preset
from minigpt.training.trainer import train

# nanoGPT README, "I only have a macbook": character-level, 4 layers, 4 heads, 128 wide,
# context 64, batch 12, 2000 iterations, lr 1e-3 decaying to 1e-4, dropout 0; GPT-2
# blocks (learned positions, LayerNorm, GELU, biases).
NANOGPT_CPU = {
    "data": dict(tokenizer="char"),
    "model": dict(n_layer=4, n_head=4, n_embd=128, block_size=64, dropout=0.0),
    "train": dict(batch_size=12, lr=1e-3, min_lr_ratio=0.1, warmup_iters=100, max_iters=2000),
}


def variant(
    name: str, overrides: dict[str, Any], budget: float, tokenizer: str | None
) -> tuple[DataConfig, dict[str, Any], TrainConfig]:
    """Data settings, model fields (vocab_size still to come) and training settings."""
    if name == "nanogpt-cpu":
        d, m, t = (dict(NANOGPT_CPU[k]) for k in ("data", "model", "train"))
    elif name == "default":
        d, (m, t) = {}, preset(DEFAULT_PRESET)
        t.update(max_iters=None, time_budget=budget)
    else:
        raise SystemExit(f"unknown variant {name!r}; use default or nanogpt-cpu")
    model_fields = {f.name for f in fields(GPTConfig)}
    for key, value in overrides.items():
        target = d if key == "vocab_size" else m if key in model_fields else t
        target[key] = value
    if tokenizer:
        d["tokenizer"] = tokenizer
    return DataConfig(**d), m, TrainConfig(**t)


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
    overrides = {k: parse_value(v) for k, v in (kv.split("=", 1) for kv in args.set)}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.variants.split(","):
            data_config, model_fields, train_config = variant(
                name, overrides, parse_duration(args.time), args.tokenizer
            )
            dataset = prepare_dataset(args.text, data_config, Path(tmp) / "cache")
            model_config = GPTConfig(vocab_size=dataset.tokenizer.vocab_size, **model_fields)
            results = []
            for r in range(args.repeats):
                t0 = time.perf_counter()
                res = train(model_config, train_config, dataset, Path(tmp) / f"{name}-{r}")
                wall = time.perf_counter() - t0
                results.append((res.val_bpb, res.val_loss, wall, res.tokens_per_s, res.steps))
                print(
                    f"{name} ({data_config.tokenizer}) run {r + 1}: val {res.val_bpb:.4f} bpb "
                    f"({res.val_loss:.4f} nats/token), {res.steps} steps, "
                    f"{res.tokens_per_s:,.0f} tokens/s, {wall:.1f} s wall",
                    flush=True,
                )
            medians = [statistics.median(col) for col in zip(*results, strict=True)]
            rows.append((f"{name} ({data_config.tokenizer})", *medians))
    print(f"\noverrides: {overrides or 'none'}; medians of {args.repeats} run(s)")
    print(f"{'variant':<22}{'val bpb':>9}{'nats/tok':>10}{'wall s':>8}{'tok/s':>9}{'steps':>7}")
    for name, bpb, loss, wall, tps, steps in rows:
        print(f"{name:<22}{bpb:>9.4f}{loss:>10.4f}{wall:>8.1f}{tps:>9,.0f}{steps:>7.0f}")


if __name__ == "__main__":
    main()
