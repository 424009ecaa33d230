"""`minigpt inspect`: look inside a trained model, one view per command.

weights, attention, positions, embeddings, lens, next, surprise and report each load a
checkpoint (the newest under ./checkpoints by default, on the device --device names),
compute their view with `minigpt.inspect`, and print it to fit the
terminal's width: in colour on a terminal, as plain text into a pipe or a file (or with
--no-color, NO_COLOR). `--json` prints one JSON object instead; `--png FILE` (weights,
attention, positions, embeddings) also draws the view (`minigpt.inspect.plots`), and
says where on stderr. Layers and heads count from 0 in flags. The commands live in
`inspect_model_cmd` (weights, positions, embeddings) and `inspect_prompt_cmd` (the views
of a prompt or a text); what they share in `inspect_options`; the rendering in
`inspect_views`.
"""

from __future__ import annotations

import typer

from minigpt.cli.inspect_model_cmd import embeddings, positions, weights
from minigpt.cli.inspect_options import HELP
from minigpt.cli.inspect_prompt_cmd import attention, lens, next_token, report, surprise_command


def build_inspect_app() -> typer.Typer:
    """The `inspect` command group, its commands in the order `--help` lists them."""
    app = typer.Typer(name="inspect", help=HELP, no_args_is_help=True, add_completion=False)
    for name, command in (
        ("weights", weights), ("attention", attention), ("positions", positions),
        ("embeddings", embeddings), ("lens", lens), ("next", next_token),
        ("surprise", surprise_command), ("report", report),
    ):  # fmt: skip
        app.command(name)(command)
    return app
