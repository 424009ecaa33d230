"""The Typer application: the root options and every command, registered here by name."""

from __future__ import annotations

from importlib import metadata
from typing import Annotated

import typer

from minigpt.cli.chat_cmd import chat
from minigpt.cli.data_cmd import download, tokenize
from minigpt.cli.export_cmd import HELP as EXPORT_HELP
from minigpt.cli.export_cmd import build_export_app
from minigpt.cli.import_cmd import import_command
from minigpt.cli.inspect_cmd import HELP as INSPECT_HELP
from minigpt.cli.inspect_cmd import build_inspect_app
from minigpt.cli.plot_cmd import plot
from minigpt.cli.sample_cmd import sample
from minigpt.cli.serve_cmd import serve
from minigpt.cli.settings import option
from minigpt.cli.terminal import stdout
from minigpt.cli.train_cmd import train_command


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
    for name, command in (
        ("download", download), ("tokenize", tokenize), ("train", train_command),
        ("sample", sample), ("chat", chat), ("serve", serve), ("plot", plot),
        ("import", import_command),
    ):  # fmt: skip
        app.command(name)(command)
    app.add_typer(build_inspect_app(), name="inspect", help=INSPECT_HELP)
    app.add_typer(build_export_app(), name="export", help=EXPORT_HELP)
    return app


def _show_version(value: bool) -> None:
    if value:
        stdout().print(f"minigpt {metadata.version('minigpt')}", markup=False)
        raise typer.Exit()


def root(
    ctx: typer.Context,
    debug: Annotated[
        bool, option("Show the full traceback when something fails.", "--debug", default="off")
    ] = False,
    version: Annotated[
        bool,
        typer.Option(
            "--version", help="Show the version and exit.", callback=_show_version, is_eager=True
        ),
    ] = False,
) -> None:
    """Train a small GPT on your own text and talk to it.

    Start with `minigpt download shakespeare`, then `minigpt train data/shakespeare.txt`
    and `minigpt sample`.
    """
    ctx.obj = {"debug": debug}  # for commands that report errors and go on (chat)
