"""The Typer application: the root options and every command, registered here by name."""

from __future__ import annotations

from typing import Annotated

import typer

from minigpt.cli import chat_cmd, data_cmd, plot_cmd, sample_cmd, train_cmd


def build_app() -> typer.Typer:
    """The `minigpt` command line, with its commands in the order `--help` lists them."""
    app = typer.Typer(
        name="minigpt",
        help="Train a small GPT on your own text and talk to it.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(root)
    app.command("download")(data_cmd.download)
    app.command("tokenize")(data_cmd.tokenize)
    app.command("train")(train_cmd.train_command)
    app.command("sample")(sample_cmd.sample)
    app.command("chat")(chat_cmd.chat)
    app.command("plot")(plot_cmd.plot)
    return app


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
