"""Fine-tuning a GPT-2-124M-shaped model on a CPU: `minigpt train --init-from` against a
plain transformers training loop on the same model, text and batch shape.

The source is a random `GPT2LMHeadModel` of GPT-2's shape saved by transformers (as
`benchmarks/import_memory.py` builds it). Two ways, each in a fresh process, in
rotation, --repeats times:

- minigpt:      the real command, `minigpt train TEXT --init-from SOURCE --block-size
                256 --batch-size 4 --max-iters STEPS --precision fp32 --dropout 0`
                (the model converted in memory, the text tokenized with GPT-2's
                tokenizer, an evaluation at step 0 and at the end);
- transformers: `GPT2LMHeadModel.from_pretrained(SOURCE)` trained by a bare loop
                (random windows of the same tokens, forward with labels, backward,
                clip, AdamW step), dropout off, fp32.

Tokens/s are per step, medians from step --warmup-steps on (evaluations excluded);
memory is each process's peak resident set.

    python benchmarks/finetune_speed.py --text data/shakespeare.txt [--steps 10 --repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
import transformers
from import_memory import child_peak_mib, gpt2_124m

BLOCK, BATCH = 256, 4


def hf_loop(source: Path, text: Path, steps: int, out: Path) -> None:
    """Train the transformers model for `steps` steps; write each step's seconds to out."""
    from minigpt.tokenizer.encodings import TiktokenTokenizer

    ids = torch.tensor(TiktokenTokenizer("gpt2").encode(text.read_text(encoding="utf-8")))
    train = ids[: int(len(ids) * 0.9)]
    model = transformers.GPT2LMHeadModel.from_pretrained(
        source, resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0
    ).train()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-5, weight_decay=0.1, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(0)
    seconds = []
    for _ in range(steps):
        t = time.perf_counter()
        starts = torch.randint(len(train) - BLOCK, (BATCH,), generator=gen)
        x = torch.stack([train[s : s + BLOCK] for s in starts])  # (B, T)
        loss = model(input_ids=x, labels=x).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seconds.append(time.perf_counter() - t)
    out.write_text(json.dumps(seconds))


def minigpt_rates(run: Path, warmup: int) -> list[float]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [r["tokens_per_s"] for r in rows if "tokens_per_s" in r and r["step"] > warmup]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--text", type=Path, required=True)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--hf-loop", type=Path, nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    transformers.logging.set_verbosity_error()
    if args.hf_loop:
        hf_loop(args.hf_loop[0], args.text, args.steps, args.hf_loop[1])
        return
    text = args.text.resolve()
    results: dict[str, list[tuple[float, float, float]]] = {"minigpt": [], "transformers": []}
    with tempfile.TemporaryDirectory() as tmp:
        source = gpt2_124m(Path(tmp) / "gpt2-124m")
        for i in range(args.repeats):
            run = Path(tmp, "runs", f"r{i}")
            argv = [sys.executable, "-m", "minigpt", "train", str(text), "--init-from",
                    str(source), "--block-size", str(BLOCK), "--batch-size", str(BATCH),
                    "--max-iters", str(args.steps), "--precision", "fp32", "--dropout", "0",
                    "--log-interval", "1", "--sample-every", "0", "--run", run.name,
                    "--out", str(run.parent), "--cache-dir", f"{tmp}/cache"]  # fmt: skip
            wall, peak = child_peak_mib(argv)
            rate = statistics.median(minigpt_rates(run, args.warmup_steps))
            results["minigpt"].append((rate, wall, peak))
            seconds = Path(tmp) / "hf.json"
            argv = [sys.executable, __file__, "--text", str(text), "--steps", str(args.steps),
                    "--hf-loop", str(source), str(seconds)]  # fmt: skip
            wall, peak = child_peak_mib(argv)
            steady = json.loads(seconds.read_text())[args.warmup_steps :]
            results["transformers"].append((BLOCK * BATCH / statistics.median(steady), wall, peak))
            rates = ", ".join(f"{way} {r[-1][0]:,.0f} tokens/s" for way, r in results.items())
            print(f"round {i + 1}: {rates}", flush=True)
    medians = {way: [statistics.median(r[k] for r in rows) for k in range(3)]
               for way, rows in results.items()}  # fmt: skip
    base = medians["transformers"][0]
    print(f"GPT-2-124M shape, context {BLOCK}, batch {BATCH}, fp32, {args.steps} steps; "
          f"medians of {args.repeats}")  # fmt: skip
    print("| way | tokens/s | vs transformers | process wall time | peak memory |")
    print("|---|---|---|---|---|")
    for way, (rate, wall, peak) in medians.items():
        print(f"| {way} | {rate:,.0f} | {rate / base:.2f}x | {wall:.0f} s | {peak:,.0f} MiB |")


if __name__ == "__main__":
    main()
