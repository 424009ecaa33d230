"""Validation bits per byte that the real `minigpt train TEXT --time BUDGET` reaches, for
the defaults and for variants given as extra options, on whatever device is at hand.

Each round runs every variant once, one after the other (never in parallel); rounds
repeat and the table gives medians. The wall time is the whole command (start-up,
compiling where it is on, training, final evaluation) from a warm tokenization cache.
Made for GPUs, where nanoGPT's own recipe (6 layers x 384, context 256, 5000 steps)
reaches 2.12 bits per byte in about 3 minutes on an A100:

    python benchmarks/budget_quality.py --text data/shakespeare.txt --time 20s \\
        --variant default= --variant "muon=--optimizer muon" --variant "eager=--compile off"
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from minigpt.config import DataConfig
from minigpt.data.cache import prepare_dataset


@dataclass
class Result:
    """One run: final val bpb, wall seconds, optimizer steps, training tokens/s."""

    bpb: float
    wall_s: float
    steps: int
    tokens_per_s: float
    device: str  # the run's device line: device, precision, compile


def run(text: Path, budget: str, work: Path, options: list[str]) -> Result:
    """`minigpt train TEXT --time BUDGET OPTIONS`, timed; its final evaluation."""
    name = f"r{time.monotonic_ns()}"
    args = [sys.executable, "-m", "minigpt", "train", str(text), "--time", budget,
            "--out", str(work / "runs"), "--run", name, "--cache-dir", str(work / "cache"),
            *options]  # fmt: skip
    t0 = time.perf_counter()
    env = {**os.environ, "COLUMNS": "200"}  # the device line unwrapped
    done = subprocess.run(args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if done.returncode != 0:
        raise SystemExit(f"{shlex.join(args)} failed:\n{done.stderr[-2000:]}")
    lines = (work / "runs" / name / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(r) for r in lines]
    final = [r for r in rows if r.get("final")][-1]
    trained = [r for r in rows if "tokens_per_s" in r]
    line = re.search(r"^\s*device\s+(.*)$", done.stdout, re.MULTILINE)
    return Result(
        bpb=final["val_bpb"], wall_s=wall, steps=final["step"],
        tokens_per_s=trained[-1]["tokens_per_s"] if trained else float("nan"),
        device=line.group(1).strip() if line else "?",
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, default=Path("data/shakespeare.txt"))
    parser.add_argument("--time", default="20s", help="the budget, as --time takes it")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--variant", action="append", default=[], metavar="NAME=OPTIONS",
                        help="train options to compare (default: the defaults alone)")  # fmt: skip
    args = parser.parse_args()
    variants = dict(v.split("=", 1) for v in args.variant) or {"default": ""}
    table: dict[str, list[Result]] = {name: [] for name in variants}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare_dataset(args.text.resolve(), DataConfig(), work / "cache")
        for r in range(args.repeats):
            for name, options in variants.items():
                res = run(args.text.resolve(), args.time, work, shlex.split(options))
                table[name].append(res)
                print(f"round {r + 1} {name}: {res.bpb:.4f} bpb, {res.wall_s:.1f} s, "
                      f"{res.steps} steps, {res.tokens_per_s:,.0f} tok/s; {res.device}",
                      flush=True)  # fmt: skip
    print(f"\nmedians of {args.repeats} round(s), --time {args.time}")
    print(f"{'variant':<16}{'val bpb':>9}{'wall s':>8}{'steps':>7}{'tok/s':>12}  options")
    for name, results in table.items():
        print(f"{name:<16}{statistics.median(r.bpb for r in results):>9.4f}"
              f"{statistics.median(r.wall_s for r in results):>8.1f}"
              f"{statistics.median(r.steps for r in results):>7.0f}"
              f"{statistics.median(r.tokens_per_s for r in results):>12,.0f}  "
              f"{variants[name] or '(defaults)'}")  # fmt: skip


if __name__ == "__main__":
    main()
