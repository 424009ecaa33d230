"""`minigpt sample`: generate text from a checkpoint, streamed as it is produced."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import torch
import typer

from minigpt.checkpoint import find_latest_checkpoint, load_checkpoint
from minigpt.cli.app import app, stderr
from minigpt.config import SampleConfig
from minigpt.device import choose_device
from minigpt.sampling import generate, prompt_ids
from minigpt.tokenizer import StreamDecoder


@app.command()
def sample(
    checkpoint: Annotated[
        Path | None,
        typer.Option("--checkpoint", "-c", help="Checkpoint or run directory (default: newest)."),
    ] = None,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text to continue.")] = "",
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", "-n", help="Tokens to generate.")
    ] = 500,
    temperature: Annotated[
        float, typer.Option("--temperature", help="0 = greedy; <1 sharper, >1 flatter.")
    ] = 0.8,
    top_k: Annotated[
        int | None, typer.Option("--top-k", help="Keep only the k likeliest tokens.")
    ] = None,
    top_p: Annotated[
        float | None, typer.Option("--top-p", help="Keep the likeliest tokens up to mass p.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same text.")] = 1337,
    num_samples: Annotated[
        int,
        typer.Option(
            "--num-samples",
            help="Samples generated together as a batch (they share one random stream, "
            "so sample 1 of 3 differs from a single sample with the same seed).",
        ),
    ] = 1,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    root: Annotated[
        Path, typer.Option("--checkpoints", help="Where to look for the newest checkpoint.")
    ] = Path("checkpoints"),
) -> None:
    """Generate text from a trained model (the newest under ./checkpoints by default)."""
    config = SampleConfig(
        max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        seed=seed, num_samples=num_samples,
    )  # fmt: skip
    dev = choose_device(device)
    ckpt = load_checkpoint(checkpoint or find_latest_checkpoint(root), device=dev)
    tok = ckpt.tokenizer
    ids = prompt_ids(tok, prompt)
    idx = torch.tensor([ids] * num_samples, dtype=torch.long, device=dev)  # (B, T)
    generator = torch.Generator(device=dev).manual_seed(seed)
    err = stderr()
    err.print(f"[dim]sampling from {ckpt.path}[/dim]")
    decoders = [StreamDecoder(tok) for _ in range(num_samples)]
    outputs = [prompt for _ in range(num_samples)]
    start = time.perf_counter()
    if num_samples == 1:
        _write(prompt)
    count = 0
    for token in generate(ckpt.model, idx, config, generator, valid_vocab=tok.vocab_size):
        count += 1
        for i, t in enumerate(token.tolist()):
            piece = decoders[i].feed([t])
            outputs[i] += piece
            if num_samples == 1:
                _write(piece)
    for i, d in enumerate(decoders):
        outputs[i] += d.flush()
    if num_samples == 1:
        _write(decoders[0].flush() + "\n")
    else:
        for i, text in enumerate(outputs):
            _write(f"--- sample {i + 1} ---\n{text}\n")
    seconds = time.perf_counter() - start
    err.print(
        f"[dim]{count * num_samples} tokens in {seconds:.2f} s "
        f"({count * num_samples / max(seconds, 1e-9):,.1f} tokens/s)[/dim]"
    )


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
