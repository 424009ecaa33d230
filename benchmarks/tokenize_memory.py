"""Peak memory of `minigpt tokenize` on a corpus far larger than memory would like.

Writes a file of --gigabytes of text (tiny shakespeare repeated, each copy with its
number so BPE sees fresh text) unless --file is given, then runs `minigpt tokenize`
on it in a child process for each --tokenizer and reports the wall time, the speed and
the child's peak resident memory (ru_maxrss). The corpus is streamed in chunks, so
the peak should stay far below the file's size (the target: under 1 GB for 2 GB).

    python benchmarks/tokenize_memory.py --text ../shared/data/shakespeare.txt --gigabytes 2
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def write_corpus(text: Path, out: Path, gigabytes: float) -> int:
    """Repeat `text` into `out` until it holds `gigabytes` GB; returns its size."""
    piece = text.read_text(encoding="utf-8")
    target = int(gigabytes * 1e9)
    written = 0
    with open(out, "w", encoding="utf-8") as f:
        copy = 0
        while written < target:
            block = f"\n\nCOPY {copy}:\n\n{piece}"
            f.write(block)
            written += len(block.encode("utf-8"))
            copy += 1
    return out.stat().st_size


# Runs the command it is given and prints that child's peak RSS (KB on Linux): each
# measurement gets its own parent, so one tokenizer's peak never hides another's.
PEAK_OF_CHILD = (
    "import resource, subprocess, sys; code = subprocess.run(sys.argv[1:]).returncode; "
    "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss); sys.exit(code)"
)


def tokenize(file: Path, tokenizer: str, out: Path) -> tuple[float, float]:
    """(seconds, peak RSS in MB) of one `minigpt tokenize` child process."""
    command = [sys.executable, "-m", "minigpt", "tokenize", str(file), "--tokenizer",
               tokenizer, "--out", str(out)]  # fmt: skip
    start = time.perf_counter()
    child = subprocess.run(
        [sys.executable, "-c", PEAK_OF_CHILD, *command], capture_output=True, text=True
    )
    seconds = time.perf_counter() - start
    if child.returncode != 0:
        raise SystemExit(f"tokenize failed: {child.stderr.strip()}")
    return seconds, int(child.stdout.strip().splitlines()[-1]) / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--text", type=Path, default=Path("data/shakespeare.txt"))
    parser.add_argument("--file", type=Path, help="Tokenize this file instead of writing one.")
    parser.add_argument("--gigabytes", type=float, default=2.0)
    parser.add_argument("--tokenizer", action="append", help="char, bpe, gpt2 (repeatable).")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="minigpt-tokenize-"))
    try:
        file = args.file
        if file is None:
            file = work / "big.txt"
            size = write_corpus(args.text, file, args.gigabytes)
        else:
            size = file.stat().st_size
        print(f"corpus {file}: {size / 1e9:.2f} GB")
        for kind in args.tokenizer or ["char", "bpe"]:
            seconds, peak = tokenize(file, kind, work / f"out-{kind}")
            meta = (work / f"out-{kind}" / "meta.json").read_text()
            print(f"{kind:6s} {seconds:7.1f} s  {size / 1e6 / seconds:6.1f} MB/s  "
                  f"peak RSS {peak:7.0f} MB  ({len(meta)} bytes of meta)")  # fmt: skip
            shutil.rmtree(work / f"out-{kind}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
