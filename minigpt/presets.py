"""Named model shapes for `minigpt train --preset`, each with the training settings
that suit it, and the block styles they are built from (also the layouts the
Hugging Face converters map: GPT-2's blocks, Llama's "modern" ones)."""

from __future__ import annotations

from typing import Any

from minigpt.errors import ConfigError

# Named shapes for `minigpt train --preset`, each with the training settings that suit
# it (besides the TrainConfig defaults). vocab_size comes from the tokenizer.
MODERN = dict(pos_encoding="rope", norm="rmsnorm", mlp="swiglu", bias=False)
GPT2_STYLE = dict(pos_encoding="learned", norm="layernorm", mlp="gelu", bias=True)
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "tiny": (dict(n_layer=2, n_head=2, n_embd=32, block_size=64, **MODERN), {}),
    # The default: measured best on a 2-core CPU in nanoGPT's CPU-recipe time (about
    # 80 s; benchmarks/): Muon at batch 24 with the rate decayed to zero reached 2.105
    # bits per byte (compiled, median of 2) against AdamW's 2.127 at batch 16 to 0.1.
    "small": (
        dict(n_layer=4, n_head=4, n_embd=128, block_size=128, **MODERN),
        dict(batch_size=24, optimizer="muon", min_lr_ratio=0.0),
    ),
    # The default on a CUDA GPU: nanoGPT's GPU shape; batch and rate measured best in a
    # 20-second budget on an H200 (benchmarks/budget_quality.py).
    "medium": (
        dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, **MODERN),
        dict(batch_size=64, lr=2e-3),
    ),
    "gpt2": (
        dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, **GPT2_STYLE),
        dict(batch_size=8, lr=6e-4, warmup_iters=700, beta2=0.95),
    ),
}
DEFAULT_PRESET = "small"  # on CPUs and Apple GPUs
GPU_PRESET = "medium"  # on CUDA GPUs
# Training settings of a run that starts from a model (`train --init-from`): a small
# constant learning rate after a short warm-up, as nanoGPT's finetune_shakespeare
# (3e-5, no decay). A pretrained model needs only small steps, and a constant rate
# leaves the model as good wherever the run stops (a time budget, Ctrl-C) and lets a
# resume go on longer without reshaping a schedule. Fewer, shorter steps than training
# from scratch: a pretrained model moves little and a CPU runs a large one slowly.
FINETUNE: dict[str, Any] = dict(
    lr=3e-5, min_lr_ratio=1.0, warmup_iters=10, max_iters=200, eval_interval=25, batch_size=4
)


def preset(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The GPTConfig fields and TrainConfig fields of a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    model, train = PRESETS[name]
    return dict(model), dict(train)
