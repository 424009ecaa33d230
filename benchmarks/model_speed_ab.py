"""The model's speed now against the model at an earlier git revision, side by side.

For a change to the model that must cost nothing on the normal path (such as the
`trace` argument that `minigpt inspect` records attention through), this times the
same two things with the working tree's `minigpt` and with the one at `--before`
(checked out into a temporary worktree), alternating, --repeats rounds each:

- train: forward, backward and an AdamW step of the default model on random batches
  (batch 16, its context), tokens/s;
- decode: a 32-token prefill, then one token at a time with the KV cache, of the
  default model and of a 4-layer, 512-wide one, tokens/s.

Each measurement runs in a fresh process with one thread, so the two trees see the
same machine. The table gives medians and the ratio now/before.

    python benchmarks/model_speed_ab.py --before HEAD~1 [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Run inside the measured tree: prints {"train": tok/s, "decode": tok/s, "decode_wide": tok/s}.
PROBE = r"""
import json, time, torch
torch.set_num_threads(1)
from minigpt.config import GPTConfig
from minigpt.kvcache import KVCache
from minigpt.model import GPT
from minigpt.presets import DEFAULT_PRESET, preset

def train_speed(config, steps=30, warm=5, batch=16):
    torch.manual_seed(0)
    model = GPT(config)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    x = torch.randint(config.vocab_size, (batch, config.block_size))
    for step in range(steps + warm):
        if step == warm:
            t0 = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return steps * batch * config.block_size / (time.perf_counter() - t0)

@torch.no_grad()
def decode_speed(config, new=96, prompt=32):
    torch.manual_seed(0)
    model = GPT(config).eval()
    cache = KVCache(config, 1, prompt + new, dtype=model.dtype, device=model.device)
    logits = model(torch.randint(config.vocab_size, (1, prompt)), cache, last_only=True)
    t0 = time.perf_counter()
    for _ in range(new):
        token = logits[:, -1].argmax(-1, keepdim=True)
        logits = model(token, cache, last_only=True)
    return new / (time.perf_counter() - t0)

shape, _ = preset(DEFAULT_PRESET)
small = GPTConfig(vocab_size=512, **shape)
wide = GPTConfig(**{**shape, "vocab_size": 512, "n_embd": 512, "n_head": 8, "block_size": 256})
print(json.dumps({"train": train_speed(small), "decode": decode_speed(small),
                  "decode_wide": decode_speed(wide)}))
"""


def measure(tree: Path) -> dict[str, float]:
    """One probe run with `tree` first on the import path."""
    env = dict(os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1")
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, cwd=tree, check=True,
        capture_output=True, text=True,
    )  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--before", required=True, help="git revision to compare with")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "before"
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-q", str(old),
                        args.before], check=True)  # fmt: skip
        try:
            runs: dict[str, list[dict[str, float]]] = {"now": [], "before": []}
            for _ in range(args.repeats):
                runs["now"].append(measure(ROOT))
                runs["before"].append(measure(old))
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(old)],
                           check=True)  # fmt: skip
    print(f"medians of {args.repeats}, one thread; before = {args.before}")
    print(f"{'tokens/s':<28}{'now':>10}{'before':>10}{'ratio':>8}")
    for key, name in (("train", "train step (default model)"), ("decode", "decode (default model)"),
                      ("decode_wide", "decode (4 x 512)")):  # fmt: skip
        now = statistics.median(r[key] for r in runs["now"])
        before = statistics.median(r[key] for r in runs["before"])
        print(f"{name:<28}{now:>10,.0f}{before:>10,.0f}{now / before:>8.3f}")


if __name__ == "__main__":
    main()
