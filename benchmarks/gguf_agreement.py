"""How closely llama.cpp follows minigpt on a trained model's GGUF exports: f32, f16
and q8_0, greedy decoding.

The checkpoint is exported three ways (`minigpt.convert.gguf_export`); --prompts windows
of --tokens tokens from the text are continued greedily for --new-tokens tokens by
minigpt and by llama.cpp (node-llama-cpp, as the tests run it: `npm ci --prefix
tests/llama_cpp` first). Reported per dtype: the file size, the share of continuations
identical to minigpt's, and the share of new tokens equal before the first difference.

    python benchmarks/gguf_agreement.py --checkpoint checkpoints/RUN --text data/shakespeare.txt
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import tempfile
from pathlib import Path

import torch

from minigpt.checkpoint import load_checkpoint
from minigpt.config import SampleConfig
from minigpt.convert.gguf_export import DTYPES, export_gguf
from minigpt.generation.generate import generate

GREEDY = Path(__file__).resolve().parent.parent / "tests" / "llama_cpp" / "greedy.mjs"


def minigpt_greedy(model: torch.nn.Module, prompt: list[int], n: int) -> list[int]:
    config = SampleConfig(temperature=0.0, max_new_tokens=n, ignore_eos=True)
    return [int(s.token[0]) for s in generate(model, torch.tensor([prompt]), config)]


def common_prefix(a: list[int], b: list[int]) -> int:
    return next(
        (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b))
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--text", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=20)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=64)
    args = parser.parse_args()
    ckpt = load_checkpoint(args.checkpoint)
    ids = ckpt.tokenizer.encode(args.text.read_text(encoding="utf-8")[-200_000:])
    rng = random.Random(0)
    starts = [rng.randrange(len(ids) - args.tokens) for _ in range(args.prompts)]
    prompts = [ids[s : s + args.tokens] for s in starts]
    ours = [minigpt_greedy(ckpt.model, p, args.new_tokens) for p in prompts]
    print(f"{args.prompts} prompts of {args.tokens} tokens, {args.new_tokens} new tokens, greedy")
    print("| dtype | file | identical continuations | tokens before the first difference |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        request = Path(tmp) / "request.json"
        request.write_text(
            json.dumps({"texts": [], "prompts": prompts, "new_tokens": args.new_tokens})
        )
        for dtype in DTYPES:
            model = Path(tmp) / f"{dtype}.gguf"
            export_gguf(args.checkpoint, model, dtype)
            done = subprocess.run(["node", GREEDY, model, request], capture_output=True,
                                  text=True, check=True)  # fmt: skip
            theirs = json.loads(done.stdout)["continuations"]
            same = sum(a == b for a, b in zip(ours, theirs, strict=True))
            prefix = sum(common_prefix(a, b) for a, b in zip(ours, theirs, strict=True))
            print(f"| {dtype} | {model.stat().st_size / 2**20:.2f} MiB | {same}/{len(prompts)} "
                  f"| {prefix / (len(prompts) * args.new_tokens):.1%} |")  # fmt: skip


if __name__ == "__main__":
    main()
