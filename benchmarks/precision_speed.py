"""Training speed in each precision a CPU's auto chooses from (fp32, bf16 autocast, bf16
autocast with fp32 attention), and what `--precision auto` picks.

For each shape (the default model, batch 16 x 128; a 6-layer 384-wide model, batch
16 x 256), a plain training loop (random token windows, forward under autocast,
cross-entropy, backward, AdamW step) runs --steps steps after --warmup-steps in each
precision, in rotation --repeats times; tokens/s are medians. Then
`minigpt.training.precision.measure_precision` decides for the same model as
`minigpt train --precision auto` would, measured afresh (a temporary cache) so the
line shows this machine's figures, not a cached decision.

On a CPU without bf16 units (AVX2 only) bf16 is expected to lose by far; on a CPU with
AMX it may win on the larger model and lose on the small one.

    python benchmarks/precision_speed.py
    python benchmarks/precision_speed.py --steps 2 --warmup-steps 1 --repeats 1   # a check
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time

import torch
import torch.nn.functional as F

from minigpt.config import DEFAULT_BPE_VOCAB, GPTConfig, TrainConfig
from minigpt.model import GPT
from minigpt.presets import DEFAULT_PRESET, preset
from minigpt.training.optim import make_optimizer
from minigpt.training.precision import CPU_CHOICES, computing_in, measure_precision

SHAPES = {
    "default": (preset(DEFAULT_PRESET)[0], 16),
    "6x384": (dict(n_layer=6, n_head=6, n_embd=384, block_size=256), 16),
}


def tokens_per_s(model: GPT, batch: int, precision: str, steps: int, warmup: int) -> float:
    """Steady tokens/s of a plain loop in `precision` (a RUN_PRECISIONS name): `warmup`
    steps, then `steps` timed."""
    cfg = model.config
    gen = torch.Generator().manual_seed(0)
    opt = make_optimizer(model, TrainConfig(max_iters=1), torch.device("cpu"))
    t0 = 0.0
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        x = torch.randint(0, cfg.vocab_size or 1, (batch, cfg.block_size + 1), generator=gen)
        with computing_in(model, precision):
            logits = model(x[:, :-1])  # (B, T, V)
            loss = F.cross_entropy(logits.float().flatten(0, 1), x[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * batch * cfg.block_size / (time.perf_counter() - t0)


def bench(name: str, args: argparse.Namespace) -> None:
    shape, batch = SHAPES[name]
    batch = args.batch_size or batch
    config = GPTConfig(vocab_size=args.vocab_size, **shape)
    torch.manual_seed(0)
    model = GPT(config)
    n = sum(p.numel() for p in model.parameters())
    print(f"\n== {name}: {n:,} parameters, batch {batch} x {config.block_size} ==")
    results: dict[str, list[float]] = {p: [] for p in CPU_CHOICES}
    for r in range(args.repeats):
        for p in CPU_CHOICES:
            tps = tokens_per_s(model, batch, p, args.steps, args.warmup_steps)
            results[p].append(tps)
            print(f"  {p} run {r + 1}: {tps:>10,.0f} tok/s")
    fp32 = statistics.median(results["fp32"])
    for p, runs in results.items():
        tps = statistics.median(runs)
        print(f"{p:<22} {tps:>10,.0f} tok/s  {tps / fp32:.2f}x fp32")
    with tempfile.TemporaryDirectory() as cache:
        decision = measure_precision(model, batch, cache=cache)
    print(f"--precision auto: {decision.choice} ({decision.why})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shapes", default=",".join(SHAPES), help="of: " + ", ".join(SHAPES))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup-steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=None, help="instead of 16")
    parser.add_argument("--vocab-size", type=int, default=DEFAULT_BPE_VOCAB)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    shapes = args.shapes.split(",")
    if unknown := set(shapes) - set(SHAPES):
        raise SystemExit(f"unknown shapes {sorted(unknown)}; choose from {', '.join(SHAPES)}")
    print(f"{torch.get_num_threads()} threads, torch {torch.__version__}, {args.repeats} repeat(s)")
    for name in shapes:
        bench(name, args)


if __name__ == "__main__":
    main()
