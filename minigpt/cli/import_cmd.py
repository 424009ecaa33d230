"""`minigpt import SOURCE`: a Hugging Face model (a local directory or a hub name) as a
minigpt run, `checkpoints/RUN/latest/`, that sample, chat, inspect, train --init-from
and export take like any other. The reading and checking is
`minigpt.convert.hf_import`'s; this module names the run and says what was made."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer

from minigpt.checkpoint import LATEST
from minigpt.cli.settings import option
from minigpt.cli.terminal import stdout
from minigpt.convert.hf_import import HFModel, import_model
from minigpt.errors import ConfigError

UNSAFE_NAME = re.compile(r"[^\w.-]+")


def import_command(
    source: Annotated[
        str,
        typer.Argument(
            help="A Hugging Face model directory (config.json, model.safetensors, tokenizer "
            "files) or a hub name such as openai-community/gpt2.",
            metavar="SOURCE",
            show_default=False,
        ),
    ],
    name: Annotated[
        str | None,
        option(
            "The run to create: checkpoints/NAME.",
            "--name",
            default="SOURCE's last part",
            metavar="NAME",
        ),
    ] = None,  # fmt: skip
    root: Annotated[
        Path,
        option("Where the run is created.", "--checkpoints", default="checkpoints", metavar="DIR"),
    ] = Path("checkpoints"),
) -> None:
    """Bring in a GPT-2 or Llama-family model from Hugging Face as a minigpt run.

    Weights are read from safetensors only (pickle files are refused), the tokenizer is
    reproduced exactly or refused, and any setting minigpt cannot represent exactly is
    named and refused. A hub name needs the `hub` extra; offline (HF_HUB_OFFLINE=1) it
    is read from the Hugging Face cache.
    """
    run_dir = root / (name or default_name(source))
    if run_dir.exists():
        raise ConfigError(f"{run_dir} already exists; choose another --name")
    model = import_model(source, run_dir / LATEST)
    stdout().print(summary(source, model, run_dir), markup=False, soft_wrap=True)


def default_name(source: str) -> str:
    """The run's name from SOURCE: its last path part, made safe as a directory name."""
    last = Path(source.rstrip("/")).name or "imported"
    return UNSAFE_NAME.sub("-", last).strip(".-") or "imported"


def summary(source: str, model: HFModel, run_dir: Path) -> str:
    """What was imported, into where, and what to try next."""
    c = model.config
    arch = {"gpt2": "GPT-2", "llama": "Llama"}[model.architecture]
    params = c.approx_num_params()
    return (
        f"imported {source} ({arch}: {c.n_layer} layers, {c.n_head} heads, width {c.n_embd}, "
        f"context {c.block_size}, vocabulary {c.vocab_size}, {model.tokenizer.kind} tokenizer, "
        f"about {params:,} parameters) as {run_dir}\n"
        f'try: minigpt sample -c {run_dir} --prompt "Hello"'
    )
