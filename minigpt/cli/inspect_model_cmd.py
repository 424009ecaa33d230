"""`minigpt inspect weights | positions | embeddings`: views of the model's weights
themselves, with no prompt needed (positions takes one for the learner's question)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

from rich.console import RenderableType

from minigpt.checkpoint import Checkpoint
from minigpt.cli import inspect_views as views
from minigpt.cli import options as opts
from minigpt.cli import position_views
from minigpt.cli.inspect_options import (
    JsonOpt,
    NoColorOpt,
    PngOpt,
    TopOpt,
    colour,
    in_range,
    load,
    print_json,
    prompt_text,
    show,
    wrote,
)
from minigpt.cli.settings import option
from minigpt.cli.terminal import stdout, user_text
from minigpt.inspect import plots, records
from minigpt.inspect.embeddings import Neighbour, analogy, nearest, projection, single_token
from minigpt.inspect.forward import token_label
from minigpt.inspect.positions import (
    cosine_matrix,
    position_shifts,
    position_table,
    rope_view,
    similarity_by_distance,
)
from minigpt.inspect.weights import weight_report

# ---- weights ----------------------------------------------------------------------------


def weights(
    *,
    layers: Annotated[
        bool,
        option(
            "Show the per-layer table for any depth.",
            "--layers",
            default=f"off: shown for up to {views.LAYERS_SHOWN} layers",
        ),
    ] = False,
    as_json: JsonOpt = False,
    png: PngOpt = None,
    checkpoint: opts.CheckpointOpt = None,
    root: opts.RootOpt = Path("checkpoints"),
    device: opts.DeviceOpt = "auto",
    threads: opts.ThreadsOpt = None,
) -> None:
    """The parameters by role: count, share, RMS, min and max; and per layer.

    Roles: embedding, positions (a learned table), query, key, value, attention output,
    up- and down-projection, unembedding, norms and biases. The counts add up to the
    model's parameter count. --png draws the counts as bars.
    """
    png = plots.check_png(png) if png else None
    ckpt = load(checkpoint, root, device, threads)
    report = weight_report(ckpt.model)
    if as_json:
        print_json(records.weights_record(report))
    else:
        show(views.weights_view(report, ckpt.config.n_layer, layers))
    if png:
        wrote(plots.weights_png(report, png))


# ---- positions --------------------------------------------------------------------------


def positions(
    *,
    prompt: Annotated[
        str,
        option(
            "Also ask, for each token of this text, whether adding its position makes "
            "it look like another token.",
            "--prompt",
            "-p",
            default="none",
            metavar="TEXT",
        ),
    ] = "",
    as_json: JsonOpt = False,
    png: PngOpt = None,
    no_color: NoColorOpt = False,
    checkpoint: opts.CheckpointOpt = None,
    root: opts.RootOpt = Path("checkpoints"),
    device: opts.DeviceOpt = "auto",
    threads: opts.ThreadsOpt = None,
) -> None:
    """How the model knows where a token is.

    Learned and sinusoidal: the table added at each position (positions x channels) and
    how alike two positions' vectors are by their distance. RoPE: each channel pair's
    rotation and how a score falls off with distance (RoPE adds nothing to embeddings).
    --png draws the table and the similarity of every pair, or RoPE's curve.
    """
    png = plots.check_png(png) if png else None
    ckpt = load(checkpoint, root, device, threads)
    if position_table(ckpt.model) is None:
        rope_positions(ckpt, as_json, png)
    else:
        table_positions(ckpt, prompt_text(prompt), as_json, png, colour(no_color))


def rope_positions(ckpt: Checkpoint, as_json: bool, png: Path | None) -> None:
    """The RoPE view: frequencies, wavelengths and the score against distance."""
    view = rope_view(ckpt.model)
    assert view is not None  # a model without a position table uses RoPE
    if as_json:
        print_json(records.rope_record(view, position_views.ROPE_NOTE))
    else:
        show(position_views.rope_view(view, stdout().width))
    if png:
        wrote(plots.rope_png(view, png))


def table_positions(
    ckpt: Checkpoint, prompt: str, as_json: bool, png: Path | None, colour: bool
) -> None:
    """The learned or sinusoidal view: the table, similarity by distance, the shifts."""
    table = position_table(ckpt.model)
    assert table is not None
    encoding = ckpt.config.pos_encoding
    similarity = cosine_matrix(table)
    first, mean = similarity_by_distance(similarity)
    shifts = position_shifts(ckpt.model, ckpt.tokenizer, prompt) if prompt else None
    if as_json:
        print_json(records.table_record(encoding, table, first, mean, shifts))
    else:
        title = f"the {encoding} position table: what is added at each position"
        width = stdout().width
        shown = position_views.table_view(table.tolist(), title, colour, width)
        shown += position_views.similarity_view(first, mean, width)
        shown += position_views.shifts_table(shifts) if shifts is not None else []
        show(shown)
    if png:
        wrote(plots.positions_png(table, similarity, f"{encoding} positions", png))


# ---- embeddings -------------------------------------------------------------------------


def embeddings(
    *,
    near: Annotated[
        str | None,
        option(
            "List the tokens whose embeddings point most nearly the way this token's "
            "does (quote it to keep a leading space: \"' the'\").",
            "--near",
            default="none",
            metavar="TOKEN",
        ),
    ] = None,
    analogy_: Annotated[
        str | None,
        option(
            'Embedding arithmetic, such as "king - man + woman" (each term one token).',
            "--analogy",
            default="none",
            metavar="EXPR",
        ),
    ] = None,
    top: TopOpt = 10,
    as_json: JsonOpt = False,
    png: PngOpt = None,
    checkpoint: opts.CheckpointOpt = None,
    root: opts.RootOpt = Path("checkpoints"),
    device: opts.DeviceOpt = "auto",
    threads: opts.ThreadsOpt = None,
) -> None:
    """Token embeddings: nearest tokens, analogies, and a 2-D map.

    Similarity is the cosine of two embeddings. --png draws the first 200 tokens on the
    embeddings' two main directions (PCA).
    """
    png = plots.check_png(png) if png else None
    in_range(top, 1, "--top")
    ckpt = load(checkpoint, root, device, threads)
    model, tok = ckpt.model, ckpt.tokenizer
    found: dict[str, tuple[str, list[Neighbour]]] = {}
    if near is not None:
        token = user_text(near, "--near")
        label = token_label(tok, single_token(tok, token))  # as the tokenizer reads it
        found["near"] = (label, nearest(model, tok, token, top))
    if analogy_ is not None:
        expr = user_text(analogy_, "--analogy")
        found["analogy"] = (expr, analogy(model, tok, expr, top))
    if as_json:
        c = ckpt.config
        print_json(
            records.embeddings_record(ckpt.tokenizer.vocab_size, c.n_embd, c.tie_embeddings, found)
        )
    else:
        show(embeddings_shown(ckpt, found))
    if png:
        wrote(plots.embeddings_png(projection(model, tok), png))


def embeddings_shown(
    ckpt: Checkpoint, found: dict[str, tuple[str, list[Neighbour]]]
) -> list[RenderableType]:
    """The tables asked for, or the summary and how to ask."""
    shown: list[RenderableType] = []
    if "near" in found:
        token, neighbours = found["near"]
        shown += views.neighbours_table(f"nearest to {views.quote(token)}", neighbours)
    if "analogy" in found:
        expr, neighbours = found["analogy"]
        shown += views.neighbours_table(f"{expr} ≈", neighbours)
    if not shown:
        c = ckpt.config
        shown = views.embeddings_summary(ckpt.tokenizer.vocab_size, c.n_embd, c.tie_embeddings)
    return shown
