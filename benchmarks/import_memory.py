"""`minigpt import` of a GPT-2-124M-shaped model saved by transformers: wall time and
peak resident memory against the weight bytes.

A random `GPT2LMHeadModel` of GPT-2's shape (12 layers, 12 heads, 768 wide, 1024
positions, 50,257 tokens) is saved with `save_pretrained` (safetensors) beside GPT-2's
tokenizer files (written from tiktoken's gpt2 encoding), then imported by the real
command in a fresh process, --repeats times. Peak memory is the child's maximum
resident set (getrusage); the baseline is the same interpreter importing minigpt's
CLI and doing nothing, so the table shows what the import itself adds.

    python benchmarks/import_memory.py [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import torch
import transformers

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.test_import import gpt2_tokenizer_files  # noqa: E402


def child_peak_mib(argv: list[str]) -> tuple[float, float]:
    """(wall seconds, peak RSS MiB) of one fresh process running argv."""
    script = (
        "import resource, subprocess, sys, time\n"
        "t = time.perf_counter()\n"
        "subprocess.run(sys.argv[1:], check=True, capture_output=True)\n"
        "print(time.perf_counter() - t, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    out = subprocess.run([sys.executable, "-c", script, *argv], check=True,
                         capture_output=True, text=True).stdout.split()  # fmt: skip
    return float(out[0]), int(out[1]) / 1024


def gpt2_124m(directory: Path) -> Path:
    """A random GPT2LMHeadModel of GPT-2's shape saved by transformers, with GPT-2's
    tokenizer files: what `minigpt import openai-community/gpt2` would read."""
    config = transformers.GPT2Config(bos_token_id=None, eos_token_id=None)
    torch.manual_seed(0)
    transformers.GPT2LMHeadModel(config).save_pretrained(directory, safe_serialization=True)
    gpt2_tokenizer_files(directory)
    return directory


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    with tempfile.TemporaryDirectory() as tmp:
        source = gpt2_124m(Path(tmp) / "gpt2-124m")
        weight_bytes = (source / "model.safetensors").stat().st_size
        baseline = child_peak_mib([sys.executable, "-c", "import minigpt.cli.app"])[1]
        walls, peaks = [], []
        for i in range(args.repeats):
            argv = [sys.executable, "-m", "minigpt", "import", str(source), "--name", f"r{i}",
                    "--checkpoints", str(Path(tmp) / "runs")]  # fmt: skip
            wall, peak = child_peak_mib(argv)
            walls.append(wall)
            peaks.append(peak)
    mib = weight_bytes / 2**20
    peak, wall = statistics.median(peaks), statistics.median(walls)
    print(f"GPT-2-124M shape, safetensors of {mib:,.0f} MiB; medians of {args.repeats}")
    print(f"import wall time        {wall:8.1f} s")
    print(f"peak resident memory    {peak:8.0f} MiB = {peak / mib:.2f}x the weight bytes")
    print(f"baseline (import only)  {baseline:8.0f} MiB; above it {peak - baseline:,.0f} MiB = "
          f"{(peak - baseline) / mib:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
