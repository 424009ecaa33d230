"""The default recipe against nanoGPT itself, in nanoGPT's own wall time.

Each round runs nanoGPT's README CPU recipe (character-level, 4 layers x 4 heads x 128,
context 64, batch 12, 2000 iterations) with nanoGPT's own code, through a script that
prints its wall time T and validation loss; then, in the same round, the real command
`minigpt train TEXT --time T` and `minigpt train TEXT --time T/4` with the defaults.
Rounds repeat (--repeats, default 3) and the table gives medians, so machine noise
hits all three alike.

minigpt's wall time is the whole command (start-up, training, final evaluation), from
a warm tokenization cache: nanoGPT's T likewise excludes its data preparation. The
validation figure is the run's final evaluation (whole validation split, or as much
of it as the budget's final-evaluation share allows), in bits per byte, the measure
that compares tokenizers.

    python benchmarks/recipe_vs_nanogpt.py --text data/shakespeare.txt \\
        --anchor path/to/nanogpt_cpu_recipe.sh [--repeats 3] [-- extra train options]

The anchor script takes PYTHON and the text, runs nanoGPT in a scratch copy and prints
JSON with wall_s and val_bpb on its last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from budget_quality import run as run_budget  # beside this script

from minigpt.config import DataConfig
from minigpt.data.cache import prepare_dataset

QUARTER = 4


@dataclass
class Result:
    """One timed run: its validation bits per byte and its wall time."""

    bpb: float
    wall_s: float


def run_anchor(anchor: Path, text: Path) -> Result:
    """nanoGPT's CPU recipe through the anchor script: (val bpb, wall seconds)."""
    out = subprocess.run(
        ["bash", str(anchor), sys.executable, str(text)],
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return Result(result["val_bpb"], result["wall_s"])


def run_minigpt(text: Path, seconds: float, work: Path, extra: list[str]) -> Result:
    """`minigpt train TEXT --time SECONDS` with the defaults; its final val bpb."""
    done = run_budget(text, f"{seconds:.1f}s", work, extra)
    return Result(done.bpb, done.wall_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, default=Path("data/shakespeare.txt"))
    parser.add_argument("--anchor", type=Path, required=True, help="nanogpt_cpu_recipe.sh")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("extra", nargs="*", help="more `minigpt train` options, after --")
    args = parser.parse_args()
    text = args.text.resolve()
    table: dict[str, list[Result]] = {"nanoGPT CPU recipe": [], "minigpt T": [], "minigpt T/4": []}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        prepare_dataset(text, DataConfig(), work / "cache")  # warm cache, as nanoGPT's prepare
        for r in range(args.repeats):
            anchor = run_anchor(args.anchor, text)
            full = run_minigpt(text, anchor.wall_s, work, args.extra)
            quarter = run_minigpt(text, anchor.wall_s / QUARTER, work, args.extra)
            for name, res in zip(table, (anchor, full, quarter), strict=True):
                table[name].append(res)
            print(f"round {r + 1}: T {anchor.wall_s:.1f} s; nanoGPT {anchor.bpb:.4f} bpb; "
                  f"minigpt {full.bpb:.4f} bpb in {full.wall_s:.1f} s, "
                  f"{quarter.bpb:.4f} bpb in {quarter.wall_s:.1f} s", flush=True)  # fmt: skip
    print(f"\nmedians of {args.repeats} round(s); extra options: {args.extra or 'none'}")
    print(f"{'run':<22}{'val bpb':>9}{'wall s':>9}")
    for name, results in table.items():
        bpb = statistics.median(r.bpb for r in results)
        wall = statistics.median(r.wall_s for r in results)
        print(f"{name:<22}{bpb:>9.4f}{wall:>9.1f}")
    print("(nanoGPT's A100 recipe: 2.12 bpb; its CPU recipe: 2.72 bpb)")


if __name__ == "__main__":
    main()
