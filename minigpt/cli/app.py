"""The Typer application object and what every command shares."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a process ended by SIGINT

app = typer.Typer(
    name="minigpt",
    help="Train a small GPT on your own text and talk to it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@app.callback()
def root(
    ctx: typer.Context,
    debug: Annotated[
        bool, typer.Option("--debug", help="Show the full traceback when something fails.")
    ] = False,
) -> None:
    """Train a small GPT on your own text and talk to it.

    Start with `minigpt download shakespeare`, then `minigpt train data/shakespeare.txt`
    and `minigpt sample`.
    """
    ctx.obj = {"debug": debug}  # for commands that report errors and go on (chat)


def stdout() -> Console:
    """Standard output; into a file or a pipe, lines are never wrapped."""
    console = Console(highlight=False)
    console.soft_wrap = not console.is_terminal
    return console


def stderr() -> Console:
    """Standard error; into a file or a pipe, lines are never wrapped."""
    console = Console(stderr=True, highlight=False)
    console.soft_wrap = not console.is_terminal
    return console
