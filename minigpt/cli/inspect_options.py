"""What every `minigpt inspect` command shares: its options (prompt, --json, --png,
--html, --no-color, --top), loading the checkpoint, and printing a view or a record."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any

from rich.console import RenderableType

from minigpt.checkpoint import Checkpoint
from minigpt.cli import options as opts
from minigpt.cli.settings import option
from minigpt.cli.terminal import json_line, stderr, stdout, user_text
from minigpt.cli.tokens import wants_colour
from minigpt.errors import ConfigError

HELP = (
    "Look inside a trained model: its weights, attention, positions, embeddings, "
    "layer-by-layer predictions, next-token distribution and surprise. Layers and heads "
    "count from 0."
)
MAX_TEMPERATURES = 6  # columns that fit 80 characters
MAX_LENS_TOP = 5
PromptOpt = Annotated[
    str, option("Text to run through the model.", "--prompt", "-p", default="none", metavar="TEXT")
]
JsonOpt = Annotated[bool, option("Print one JSON object instead.", "--json", default="off")]
PngOpt = Annotated[
    Path | None,
    option(
        "Also draw the view to this .png file (needs matplotlib).",
        "--png",
        default="none",
        metavar="FILE",
    ),
]
HtmlOpt = Annotated[
    Path | None,
    option(
        "Also write an interactive page to this .html file (one file, works offline).",
        "--html",
        default="none",
        metavar="FILE",
    ),
]
NoColorOpt = Annotated[
    bool,
    option(
        "Plain text without colours (as NO_COLOR does, and as a pipe gets).",
        "--no-color",
        default="off",
    ),
]
TopOpt = Annotated[int, option("How many tokens to list.", "--top", default="10", metavar="K")]


# ---- shared -----------------------------------------------------------------------------


def load(checkpoint: Path | None, root: Path, device: str, threads: int | None) -> Checkpoint:
    """The checkpoint's model on `device`, torch computing with `threads` CPU threads."""
    return opts.load_model(checkpoint, root, device, threads)[0]


def show(shown: list[RenderableType]) -> None:
    """Print a view, wrapped to the console's width even into a pipe."""
    console = stdout()
    for renderable in shown:
        console.print(renderable, soft_wrap=False)


def print_json(record: dict[str, Any]) -> None:
    """One JSON object on stdout."""
    sys.stdout.write(json_line(record, sys.stdout))
    sys.stdout.flush()


def colour(no_color: bool) -> bool:
    """Whether stdout shows colour."""
    return wants_colour(stdout(), no_color)


def wrote(path: Path) -> None:
    """Say on stderr where a PNG went (stdout keeps the view, or the JSON)."""
    stderr().print(f"wrote {path}", markup=False, soft_wrap=True)


def check_html(path: Path) -> Path:
    """`path`, refused unless it ends in .html (checked before any work)."""
    if path.suffix.lower() not in (".html", ".htm"):
        raise ConfigError(f"{path} must be an .html file")
    return path


def prompt_text(prompt: str) -> str:
    """--prompt as the UTF-8 text it must be."""
    return user_text(prompt, "the prompt")


def in_range(value: int, low: int, flag: str, high: int | None = None) -> int:
    """`value` when it is at least `low` (and at most `high`); refused in one line
    otherwise."""
    if value < low or (high is not None and value > high):
        upper = f" and at most {high}" if high is not None else ""
        raise ConfigError(f"{flag} {value} is out of range: give at least {low}{upper}")
    return value
