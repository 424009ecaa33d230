"""Generation speed: minigpt's KV-cache decoding against transformers and against no cache.

Batch 1, greedy decoding (temperature 0) only: there is no sampling variant, so the
figures are the model and the cache, not the filters of `minigpt.generation.sampling`. Every path
gets the same --prompt-tokens random prompt (fixed seed) and makes --new-tokens tokens.
Each path runs once, short, as a warm-up, then --repeats times, in rotation (a, b, c,
a, b, c, ...) so machine noise hits all alike; the tables give medians.

1. GPT-2 124M shape (random init, fixed seed), three ways:

   - minigpt:      `minigpt.generation.generate.generate` with its KV cache, after
                   `minigpt.generation.inference.prepare_for_inference` (the matmul path it picks
                   is printed);
   - transformers: `GPT2LMHeadModel.generate` with its default cache, on the same weights
                   exported by `minigpt.convert.gpt2` (checked once: the logits on the
                   prompt must agree within 1e-3), forced to make exactly --new-tokens;
   - no-cache:     `generate(..., use_cache=False)`, the whole context run again for
                   every token. It is slow, so it makes --no-cache-tokens tokens
                   (default: as many as the others). Fewer gives a rough figure faster,
                   but an optimistic one: without a cache each token costs more than the
                   last, so tokens/s over a shorter run is higher than over the full one.

   The token lists are compared and the result printed (minigpt with and without the
   cache must agree; transformers should, greedy on the same weights, but float
   rounding may break a near-tie, so that one is only reported).

2. The default model (preset DEFAULT_PRESET: block_size 128, so the default 32 + 256 tokens
   slide the context window, which is part of what is measured), with and without the
   cache, --new-tokens each. With --checkpoint (a run or snapshot directory) the trained
   model is used; without it the preset's shape with random init and the vocabulary of
   the default BPE tokenizer (--vocab-size): the speed depends on the shape, not on
   the weights.

Tokens/s = new tokens / seconds from the call to the last token (prompt prefill
included). Time to first token (TTFT) = seconds from the call until minigpt yields its
first step (prefill + first argmax). transformers' `generate` returns all the tokens at
once, so its TTFT is a separate `generate(..., max_new_tokens=1)` call in each repeat.
The tables also say how many times faster minigpt with its cache is than each way:
tok/s minigpt/this, TTFT this/minigpt (above 1: minigpt is faster).

The memory-bandwidth limit: decoding at batch 1 reads every weight once per token, so
no implementation can beat (bytes/s the machine reads) / (bytes of weights per token).
The bandwidth is measured here (the best of all sums of a --bandwidth-mib fp32
tensor, far larger than any cache, --bandwidth-repeats at the start and after each
round: on a shared machine one busy moment would set the limit too low); the bytes per token are the
linear layers' weights and biases (the unembedding included, so a tied embedding counts
once) in the dtype the matmul path reads (bf16: 2 bytes, int8: 1 and a scale per row,
else 4) plus the norms (an embedding lookup reads one row and is left out; so is the
KV cache). Each way's
tokens/s is also given as a fraction of the limit for the weights it reads
(transformers: fp32). The path is the one `prepare_for_inference` measures and picks on
this machine (`--matmul auto`, cached per machine and shape); it is printed with why.

    python benchmarks/generate_speed.py [--checkpoint checkpoints/RUN] [--threads N]
    python benchmarks/generate_speed.py --repeats 1 --new-tokens 16 --no-cache-tokens 8
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn
import transformers

from minigpt.checkpoint import load_checkpoint
from minigpt.config import DEFAULT_BPE_VOCAB, GPTConfig, SampleConfig
from minigpt.convert.gpt2 import config_to_gpt2, state_dict_to_gpt2
from minigpt.generation.generate import generate
from minigpt.generation.inference import prepare_for_inference
from minigpt.model import GPT
from minigpt.presets import DEFAULT_PRESET, preset

GPT2_124M = GPTConfig(
    vocab_size=50257, n_layer=12, n_head=12, n_embd=768, block_size=1024,
    pos_encoding="learned", norm="layernorm", mlp="gelu", bias=True, dropout=0.0,
)  # fmt: skip
LOGITS_TOLERANCE = 1e-3
WARMUP_TOKENS = 4
NORMS = (nn.LayerNorm, nn.RMSNorm)
WEIGHT_BYTES = {"bf16": 2, "int8": 1}  # bytes a decode step reads per weight; fp32's 4 else


@dataclass
class Run:
    """One timed generation."""

    tokens_per_s: float
    ttft_s: float
    tokens: list[int]


class Bandwidth:
    """Bytes/s this machine streams from memory: the best of all the sums of a `mib` MiB
    fp32 tensor taken so far (`repeats` at a time: at the start and after each round, so
    a moment when the shared machine was busy does not set the limit)."""

    def __init__(self, mib: int, repeats: int) -> None:
        self.x = torch.ones(mib * 2**20 // 4)
        self.x.sum()  # touches the pages: not counted
        self.repeats, self.sums, self.best = repeats, 0, 0.0

    def measure(self) -> float:
        for _ in range(self.repeats):
            t0 = time.perf_counter()
            self.x.sum()
            self.best = max(self.best, self.x.numel() * 4 / (time.perf_counter() - t0))
        self.sums += self.repeats
        return self.best

    def line(self) -> str:
        mib = self.x.numel() * 4 // 2**20
        return (
            f"memory read bandwidth: {self.best / 1e9:.1f} GB/s (best of {self.sums} sums "
            f"of {mib} MiB of fp32, taken before and between the rounds)"
        )


def weight_bytes_per_token(config: GPTConfig, path: str) -> int:
    """Bytes of weights one batch-1 decode step reads on matmul path `path`: the linear
    layers' weights (a tied embedding once, as the unembedding) at 2 bytes in bf16, 1 in
    int8 (plus a 2-byte scale per output row), else 4; their biases at 2 bytes in bf16,
    else 4; the norms at 4. Embedding lookups (one row) are left out."""
    with torch.device("meta"):
        model = GPT(config)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    weights = sum(m.weight.numel() for m in linears)
    biases = sum(m.bias.numel() for m in linears if m.bias is not None)
    scales = sum(m.out_features for m in linears) if path == "int8" else 0
    norms = sum(p.numel() for m in model.modules() if isinstance(m, NORMS) for p in m.parameters())
    per_weight = WEIGHT_BYTES.get(path, 4)
    per_bias = 2 if path == "bf16" else 4
    return weights * per_weight + scales * 2 + biases * per_bias + norms * 4


def limit_line(bandwidth: float, config: GPTConfig, path: str) -> tuple[float, str]:
    """The tokens/s limit of path `path` and a line saying how it was reached."""
    per_token = weight_bytes_per_token(config, path)
    limit = bandwidth / per_token
    return limit, (
        f"bandwidth limit ({path}): {bandwidth / 1e9:.1f} GB/s / {per_token / 1e6:.1f} MB "
        f"of weights per token = {limit:,.1f} tokens/s"
    )


def prepare(model: GPT) -> str:
    """Make `model` ready the way minigpt does (`--matmul auto`); print the path and why."""
    decision = prepare_for_inference(model)
    print(f"minigpt matmul path: {decision.choice} ({decision.why})")
    return decision.choice


def random_prompt(vocab_size: int, length: int, seed: int) -> torch.Tensor:
    """Token ids (1, length), the same for a given seed."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randint(0, vocab_size, (1, length), generator=gen)


def run_minigpt(model: GPT, prompt: torch.Tensor, new_tokens: int, use_cache: bool) -> Run:
    """Greedy `minigpt.generation.generate.generate`, timed to the first and the last step."""
    config = SampleConfig(max_new_tokens=new_tokens, temperature=0.0)
    tokens: list[int] = []
    ttft = 0.0
    t0 = time.perf_counter()
    for step in generate(model, prompt, config, use_cache=use_cache):
        if not tokens:
            ttft = time.perf_counter() - t0
        tokens.append(int(step.token[0]))
    total = time.perf_counter() - t0
    return Run(new_tokens / total, ttft, tokens)


def hf_generate(hf: transformers.GPT2LMHeadModel, prompt: torch.Tensor, n: int) -> torch.Tensor:
    """Exactly n greedy tokens from transformers (ids (1, prompt + n))."""
    with torch.inference_mode():
        return hf.generate(
            prompt,
            attention_mask=torch.ones_like(prompt),  # else the pad id in the prompt is masked
            min_new_tokens=n, max_new_tokens=n, do_sample=False, pad_token_id=0,
        )  # fmt: skip


def run_hf(hf: transformers.GPT2LMHeadModel, prompt: torch.Tensor, new_tokens: int) -> Run:
    """TTFT from a one-token call, then tokens/s from a full one."""
    t0 = time.perf_counter()
    hf_generate(hf, prompt, 1)
    ttft = time.perf_counter() - t0
    t0 = time.perf_counter()
    out = hf_generate(hf, prompt, new_tokens)
    total = time.perf_counter() - t0
    return Run(new_tokens / total, ttft, out[0, prompt.size(1) :].tolist())


def export_to_hf(model: GPT) -> transformers.GPT2LMHeadModel:
    """The same weights in a transformers GPT-2 (before the model's layers are packed)."""
    cfg = model.config
    hf = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config_to_gpt2(cfg)))
    hf.load_state_dict(state_dict_to_gpt2(model.state_dict(), cfg), strict=False)
    return hf.eval()


def logits_difference(model: GPT, hf: transformers.GPT2LMHeadModel, prompt: torch.Tensor) -> float:
    """Largest |minigpt - transformers| over the logits of every prompt position."""
    with torch.inference_mode():
        return (model.eval()(prompt) - hf(prompt).logits).abs().max().item()


def same_tokens(a: list[int], b: list[int]) -> str:
    """'yes (n tokens)' when b matches a over their common length, else where they part."""
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return f"NO: they differ first at new token {i} of {n}"
    return f"yes ({n} tokens)"


def median_row(name: str, runs: list[Run], base: list[Run], note: str = "") -> str:
    """Median tok/s and TTFT, and how many times faster `base` is than this: tok/s
    base/this, TTFT this/base, so above 1 means `base` is faster."""
    tps = statistics.median(r.tokens_per_s for r in runs)
    ttft = statistics.median(r.ttft_s for r in runs)
    speedup = statistics.median(r.tokens_per_s for r in base) / tps
    ttft_speedup = ttft / statistics.median(r.ttft_s for r in base)
    row = f"{name:<13} {tps:>9.1f} {ttft * 1000:>9.1f} {speedup:>15.2f}x {ttft_speedup:>15.2f}x"
    return f"{row}  {note}".rstrip()


def of_limit(runs: list[Run], limit: float) -> str:
    """The median tokens/s as a share of the bandwidth limit."""
    return f"{statistics.median(r.tokens_per_s for r in runs) / limit:.0%} of the limit"


def header(base: str) -> str:
    """The two header lines of a table of `median_row`s."""
    faster = f"{base} faster"
    return (
        f"{'way':<13} {'tok/s':>9} {'TTFT ms':>9} {faster:>16} {faster:>16}\n"
        f"{'':<13} {'':>9} {'':>9} {'(tok/s)':>16} {'(TTFT)':>16}"
    )


def print_run(name: str, r: int, run: Run) -> None:
    """One line per timed run."""
    print(
        f"  {name:<12} run {r + 1}: {run.tokens_per_s:>8.1f} tok/s, "
        f"TTFT {run.ttft_s * 1000:>7.1f} ms"
    )


def bench_gpt2(args: argparse.Namespace) -> None:
    """Part 1: GPT-2 124M shape, minigpt (cache) vs transformers vs minigpt (no cache)."""
    print(f"\n== 1. GPT-2 124M shape, random init (seed {args.seed}) ==")
    torch.manual_seed(args.seed)
    model = GPT(GPT2_124M)
    hf = export_to_hf(model)  # before prepare_for_inference replaces the nn.Linear layers
    prompt = random_prompt(GPT2_124M.vocab_size, args.prompt_tokens, args.seed)
    diff = logits_difference(model, hf, prompt)
    verdict = "ok" if diff < LOGITS_TOLERANCE else f"OVER {LOGITS_TOLERANCE}"
    print(f"max |logits minigpt - transformers| on the prompt: {diff:.2e} ({verdict})")
    path = prepare(model)
    print(
        f"prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens "
        f"(no-cache: {args.no_cache_tokens}), batch 1, greedy"
    )

    ways = {
        "minigpt": lambda n: run_minigpt(model, prompt, n, use_cache=True),
        "transformers": lambda n: run_hf(hf, prompt, n),
        "no-cache": lambda n: run_minigpt(model, prompt, n, use_cache=False),
    }
    counts = {"minigpt": args.new_tokens, "transformers": args.new_tokens}
    counts["no-cache"] = args.no_cache_tokens
    for way in ways.values():
        way(WARMUP_TOKENS)
    results: dict[str, list[Run]] = {name: [] for name in ways}
    for r in range(args.repeats):
        for name, way in ways.items():
            run = way(counts[name])
            results[name].append(run)
            print_run(name, r, run)
        args.bandwidth.measure()

    print(args.bandwidth.line())
    limits = {way: limit_line(args.bandwidth.best, GPT2_124M, p) for way, p in
              (("minigpt", path), ("transformers", "default"))}  # fmt: skip
    print("\n".join(sorted({line for _, line in limits.values()})))
    ours = results["minigpt"][0].tokens
    for other in ("no-cache", "transformers"):
        match = same_tokens(ours, results[other][0].tokens)
        print(f"minigpt (cache) vs {other}, same tokens: {match}")
    print(f"\nmedians over {args.repeats} run(s)\n{header('minigpt')}")
    for name, runs in results.items():
        note = f"({counts[name]} tokens)" if counts[name] != args.new_tokens else ""
        if name in limits:  # without a cache the time goes into arithmetic, not reading
            note += f" {of_limit(runs, limits[name][0])}"
        print(median_row(name, runs, results["minigpt"], note.strip()))


def default_model(args: argparse.Namespace) -> tuple[GPT, str]:
    """The model of part 2 and a line saying what it is."""
    shape, _ = preset(DEFAULT_PRESET)
    if args.checkpoint is not None:
        ckpt = load_checkpoint(args.checkpoint, device=torch.device("cpu"))
        cfg = ckpt.config
        same = all(getattr(cfg, k) == v for k, v in shape.items())
        note = "" if same else f" (NOT the {DEFAULT_PRESET!r} preset's shape)"
        return ckpt.model, f"checkpoint {ckpt.path}{note}: {cfg}"
    config = GPTConfig(vocab_size=args.vocab_size, **shape)
    torch.manual_seed(args.seed)
    what = f"preset {DEFAULT_PRESET!r}, RANDOM init (seed {args.seed}, no --checkpoint): {config}"
    return GPT(config), what


def bench_default(args: argparse.Namespace) -> None:
    """Part 2: the default model with and without the KV cache."""
    model, what = default_model(args)
    print(f"\n== 2. default model: {what} ==")
    path = prepare(model)
    cfg = model.config
    prompt = random_prompt(cfg.vocab_size, args.prompt_tokens, args.seed)
    total = args.prompt_tokens + args.new_tokens
    slides = "slides" if total > cfg.block_size else "does not slide"
    print(
        f"prompt {args.prompt_tokens} tokens, {args.new_tokens} new tokens, batch 1, greedy; "
        f"block_size {cfg.block_size}: the window {slides}"
    )

    ways = {"cache": True, "no-cache": False}
    for use_cache in ways.values():
        run_minigpt(model, prompt, WARMUP_TOKENS, use_cache)
    results: dict[str, list[Run]] = {name: [] for name in ways}
    for r in range(args.repeats):
        for name, use_cache in ways.items():
            run = run_minigpt(model, prompt, args.new_tokens, use_cache)
            results[name].append(run)
            print_run(name, r, run)
        args.bandwidth.measure()

    print(args.bandwidth.line())
    limit, line = limit_line(args.bandwidth.best, cfg, path)
    print(line)
    match = same_tokens(results["cache"][0].tokens, results["no-cache"][0].tokens)
    print(f"cache vs no-cache, same tokens: {match}")
    print(f"\nmedians over {args.repeats} run(s)\n{header('cache')}")
    for name, runs in results.items():
        print(median_row(name, runs, results["cache"], of_limit(runs, limit)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--prompt-tokens", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=256)
    parser.add_argument(
        "--no-cache-tokens", type=int, default=None,
        help="tokens for GPT-2's no-cache runs (default: --new-tokens; fewer is rougher)",
    )  # fmt: skip
    parser.add_argument("--checkpoint", type=Path, default=None, help="run or snapshot dir")
    parser.add_argument(
        "--vocab-size", type=int, default=DEFAULT_BPE_VOCAB,
        help="vocabulary of the random default model (default: the default BPE size)",
    )  # fmt: skip
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--bandwidth-mib", type=int, default=512, help="tensor summed")
    parser.add_argument("--bandwidth-repeats", type=int, default=5)
    args = parser.parse_args()
    if args.no_cache_tokens is None:
        args.no_cache_tokens = args.new_tokens
    if min(args.repeats, args.prompt_tokens, args.new_tokens, args.no_cache_tokens) < 1:
        raise SystemExit("--repeats, --prompt-tokens and the token counts must be >= 1")
    if args.prompt_tokens + args.new_tokens > GPT2_124M.block_size:
        raise SystemExit(f"prompt + new tokens must fit GPT-2's {GPT2_124M.block_size}")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    transformers.logging.set_verbosity_error()

    print(
        f"{torch.get_num_threads()} threads, torch {torch.__version__}, "
        f"transformers {transformers.__version__}, {args.repeats} repeat(s)"
    )
    args.bandwidth = Bandwidth(args.bandwidth_mib, args.bandwidth_repeats)
    args.bandwidth.measure()
    print(args.bandwidth.line())
    bench_gpt2(args)
    bench_default(args)


if __name__ == "__main__":
    main()
