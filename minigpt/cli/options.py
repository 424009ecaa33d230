"""Options that `minigpt sample` and `minigpt chat` share, and the model loading they share."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minigpt.checkpoint import Checkpoint, find_latest_checkpoint, load_checkpoint
from minigpt.device import choose_device
from minigpt.generation.inference import prepare_for_inference

CheckpointOpt = Annotated[
    Path | None,
    typer.Option("--checkpoint", "-c", help="Checkpoint or run directory (default: newest)."),
]
RootOpt = Annotated[
    Path, typer.Option("--checkpoints", help="Where to look for the newest checkpoint.")
]
DeviceOpt = Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")]
TemperatureOpt = Annotated[
    float, typer.Option("--temperature", "-t", help="0 = greedy; <1 sharper, >1 flatter.")
]
TopKOpt = Annotated[int | None, typer.Option("--top-k", help="Keep only the k likeliest tokens.")]
TopPOpt = Annotated[
    float | None, typer.Option("--top-p", help="Keep the likeliest tokens up to mass p.")
]
MinPOpt = Annotated[
    float | None,
    typer.Option("--min-p", help="Drop tokens less likely than min-p x the likeliest."),
]
RepetitionOpt = Annotated[
    float,
    typer.Option("--repetition-penalty", help="> 1 discourages tokens seen lately (1 = off)."),
]
PresenceOpt = Annotated[
    float, typer.Option("--presence-penalty", help="Subtracted from every token seen lately.")
]
FrequencyOpt = Annotated[
    float, typer.Option("--frequency-penalty", help="Subtracted per time a token was seen.")
]
WindowOpt = Annotated[
    int, typer.Option("--penalty-window", help="How many recent tokens the penalties see.")
]
StopOpt = Annotated[
    list[str] | None,
    typer.Option("--stop", help="Stop when the text contains this (repeatable)."),
]
SeedOpt = Annotated[int, typer.Option(help="Same seed, same text.")]


def load_for_generation(checkpoint: Path | None, root: Path, device: str) -> tuple[Checkpoint, str]:
    """The checkpoint's model on the chosen device, ready to generate, and how its
    matmuls run (see `minigpt.generation.inference`)."""
    dev = choose_device(device)
    ckpt = load_checkpoint(checkpoint or find_latest_checkpoint(root), device=dev)
    return ckpt, prepare_for_inference(ckpt.model)


def probability_style(p: float) -> str:
    """The colour a token with probability p is shown in."""
    return "green" if p >= 0.5 else "yellow" if p >= 0.1 else "red"


def unescape(text: str) -> str:
    r"""Stop strings typed on a command line: "\n" and "\t" mean newline and tab."""
    return text.replace("\\n", "\n").replace("\\t", "\t")
