"""Seconds to train a byte-level BPE vocabulary (median of --repeats runs).

python benchmarks/bpe_train.py --text data/shakespeare.txt --vocab-size 4096
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from minigpt.tokenizer.files import train_tokenizer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, default=Path("data/shakespeare.txt"))
    parser.add_argument("--vocab-size", type=int, default=4096)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    text = args.text.read_text(encoding="utf-8")
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        tok = train_tokenizer("bpe", text, args.vocab_size)
        seconds.append(time.perf_counter() - start)
    n_bytes, n_tokens = len(text.encode()), len(tok.encode(text))
    median = statistics.median(seconds)
    print(
        f"bpe vocab {tok.vocab_size} on {n_bytes:,} bytes: median {median:.2f} s "
        f"of {args.repeats} ({', '.join(f'{s:.2f}' for s in seconds)}); "
        f"{n_bytes / n_tokens:.2f} bytes per token"
    )


if __name__ == "__main__":
    main()
