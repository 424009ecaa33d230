"""`minigpt inspect`: look inside a trained model, one view per command.

weights, attention, positions, embeddings, lens, next and surprise each load a
checkpoint (the newest under ./checkpoints by default, on the CPU unless --device says
otherwise), compute their view with `minigpt.inspect`, and print it to fit the
terminal's width: in colour on a terminal, as plain text into a pipe or a file (or with
--no-color, NO_COLOR). `--json` prints one JSON object instead; `--png FILE` (weights,
attention, positions, embeddings) also draws the view (`minigpt.inspect.plots`), and
says where on stderr. Layers and heads count from 0 in flags.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import RenderableType

from minigpt.checkpoint import Checkpoint, find_latest_checkpoint, load_checkpoint
from minigpt.cli import inspect_views as views
from minigpt.cli import options as opts
from minigpt.cli.sample_cmd import read_prompt
from minigpt.cli.settings import option
from minigpt.cli.terminal import json_line, stderr, stdout, user_text
from minigpt.cli.tokens import wants_colour
from minigpt.config import SampleConfig
from minigpt.device import choose_device, set_threads
from minigpt.errors import ConfigError
from minigpt.fileio import write_atomic
from minigpt.inspect import plots
from minigpt.inspect.attention import HeadStages, attention_lists, check_head, head_stages
from minigpt.inspect.embeddings import Neighbour, analogy, nearest, projection, single_token
from minigpt.inspect.forward import token_label, trace_prompt
from minigpt.inspect.html import attention_html, report_html
from minigpt.inspect.lens import logit_lens
from minigpt.inspect.nextdist import NextView, entropy_bits, next_distribution
from minigpt.inspect.positions import (
    Shift,
    cosine_matrix,
    position_shifts,
    position_table,
    rope_view,
    similarity_by_distance,
)
from minigpt.inspect.surprise import surprise
from minigpt.inspect.weights import WeightReport, WeightRow, weight_report

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
DeviceOpt = Annotated[
    str, option("cpu, cuda, mps or auto.", "--device", default="cpu", metavar="NAME")
]
TopOpt = Annotated[int, option("How many tokens to list.", "--top", default="10", metavar="K")]


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


# ---- shared -----------------------------------------------------------------------------


def load(checkpoint: Path | None, root: Path, device: str, threads: int | None) -> Checkpoint:
    """The checkpoint's model on `device`, torch computing with `threads` CPU threads."""
    set_threads(threads)
    dev = choose_device(device)
    return load_checkpoint(checkpoint or find_latest_checkpoint(root), device=dev)


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
    device: DeviceOpt = "cpu",
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
        print_json(weights_record(report))
    else:
        show(views.weights_view(report, ckpt.config.n_layer, layers))
    if png:
        wrote(plots.weights_png(report, png))


def weights_record(report: WeightReport) -> dict[str, Any]:
    """The report as JSON: total, tied, every category, every (layer, category)."""

    def row(r: WeightRow) -> dict[str, Any]:
        s = r.stats
        out = {"category": r.category, "count": s.count, "share": r.share}
        return out | {"rms": s.rms, "min": s.min, "max": s.max}

    return {
        "total": report.total,
        "tied": report.tied,
        "categories": [row(r) for r in report.categories],
        "layers": [{"layer": r.layer} | row(r) for r in report.layers],
    }


# ---- attention --------------------------------------------------------------------------


def attention(
    *,
    prompt: PromptOpt = "",
    layer: Annotated[
        int | None,
        option(
            "The layer to show, counting from 0.",
            "--layer",
            default="every layer; 0 with --head",
            metavar="L",
        ),
    ] = None,
    head: Annotated[
        int | None,
        option(
            "Show this head's four stages (scores, scaled, masked, softmax), counting from 0.",
            "--head",
            default="every head, summarised",
            metavar="H",
        ),
    ] = None,
    as_json: JsonOpt = False,
    png: PngOpt = None,
    html: HtmlOpt = None,
    no_color: NoColorOpt = False,
    checkpoint: opts.CheckpointOpt = None,
    root: opts.RootOpt = Path("checkpoints"),
    device: DeviceOpt = "cpu",
    threads: opts.ThreadsOpt = None,
) -> None:
    """Where each head looks: a heatmap per head, or one head's four stages.

    Rows are queries (the token looking), columns keys (the token looked at). With
    --head, the head's scores Q·Kᵀ, scaled by 1/√d_k, masked (no later keys) and
    softmaxed. --json prints {"tokens", "attention": [layer][head][query][key]} (and the
    stages with --layer and --head); --png draws every layer and head; --html writes a
    page where choosing a layer and head, and hovering a token, shows where it looks.
    """
    png = plots.check_png(png) if png else None
    html = check_html(html) if html else None
    ckpt = load(checkpoint, root, device, threads)
    traced = trace_prompt(ckpt.model, ckpt.tokenizer, prompt_text(prompt))
    check_head(traced, layer, head)
    if as_json:
        record: dict[str, Any] = {"tokens": traced.labels, "attention": attention_lists(traced)}
        if layer is not None and head is not None:
            record["stages"] = stages_record(head_stages(traced, layer, head))
        print_json(record)
    elif head is not None:
        stages = head_stages(traced, layer or 0, head)
        show(views.stages_view(stages, traced.labels, colour(no_color), stdout().width))
    else:
        chosen = [layer] if layer is not None else list(range(len(traced.trace.attention)))
        attn = attention_lists(traced)
        show(views.heads_view(attn, traced.labels, chosen, colour(no_color), stdout().width))
    if png:
        wrote(plots.attention_png(traced.labels, traced.trace.attention, png))
    if html:
        write_atomic(html, attention_html(traced, f"attention: {ckpt.path}").encode())
        wrote(html)


def stages_record(stages: HeadStages) -> dict[str, Any]:
    """One head's four stages as JSON; the masked stage's -inf as null."""

    def finite(rows: list[list[float]]) -> list[list[float | None]]:
        return [[v if math.isfinite(v) else None for v in row] for row in rows]

    return {
        "layer": stages.layer,
        "head": stages.head,
        "d_k": stages.d_k,
        "scores": stages.scores.tolist(),
        "scaled": stages.scaled.tolist(),
        "masked": finite(stages.masked.tolist()),
        "softmax": stages.softmax.tolist(),
    }


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
    device: DeviceOpt = "cpu",
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
        print_json(
            {
                "encoding": "rope",
                "frequencies": view.frequencies,
                "wavelengths": view.wavelengths,
                "distances": view.distances,
                "scores": view.scores,
                "note": views.ROPE_NOTE,
            }
        )
    else:
        show(views.rope_view(view, stdout().width))
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
        record = {
            "encoding": encoding,
            "table": table.tolist(),
            "similarity_to_first": first,
            "mean_similarity_by_distance": mean,
        }
        if shifts is not None:
            record["shifts"] = [shift_record(s) for s in shifts]
        print_json(record)
    else:
        title = f"the {encoding} position table: what is added at each position"
        width = stdout().width
        shown = views.table_view(table.tolist(), title, colour, width)
        shown += views.similarity_view(first, mean, width)
        shown += views.shifts_table(shifts) if shifts is not None else []
        show(shown)
    if png:
        wrote(plots.positions_png(table, similarity, f"{encoding} positions", png))


def shift_record(s: Shift) -> dict[str, Any]:
    """One prompt token before and after its position is added, as JSON."""
    return {
        "token": s.label,
        "position": s.position,
        "nearest_id": s.nearest_id,
        "nearest": s.nearest_label,
        "cosine": s.cosine,
        "own_cosine": s.own_cosine,
        "changed": s.changed,
    }


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
    device: DeviceOpt = "cpu",
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
        print_json(embeddings_record(ckpt, found))
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


def embeddings_record(
    ckpt: Checkpoint, found: dict[str, tuple[str, list[Neighbour]]]
) -> dict[str, Any]:
    """The sizes, and each list asked for, as JSON."""
    record: dict[str, Any] = {
        "vocab_size": ckpt.tokenizer.vocab_size,
        "n_embd": ckpt.config.n_embd,
        "tied": ckpt.config.tie_embeddings,
    }
    for key, (asked, neighbours) in found.items():
        record[key] = {
            "asked": asked,
            "tokens": [{"id": n.id, "token": n.label, "cosine": n.cosine} for n in neighbours],
        }
    return record


# ---- logit lens -------------------------------------------------------------------------


def lens(
    *,
    prompt: PromptOpt = "",
    top: Annotated[
        int, option(f"Tokens per cell (1 to {MAX_LENS_TOP}).", "--top", default="1", metavar="K")
    ] = 1,
    as_json: JsonOpt = False,
    no_color: NoColorOpt = False,
    checkpoint: opts.CheckpointOpt = None,
    root: opts.RootOpt = Path("checkpoints"),
    device: DeviceOpt = "cpu",
    threads: opts.ThreadsOpt = None,
) -> None:
    """The logit lens: what the model would predict after each layer, at each position.

    The final norm and the unembedding applied to the residual stream after the
    embedding and after every layer; the last row is the model's own prediction.
    """
    in_range(top, 1, "--top", MAX_LENS_TOP)
    ckpt = load(checkpoint, root, device, threads)
    traced = trace_prompt(ckpt.model, ckpt.tokenizer, prompt_text(prompt))
    rows = logit_lens(ckpt.model, ckpt.tokenizer, traced, k=top)
    if as_json:
        print_json(
            {
                "tokens": traced.labels,
                "rows": [
                    {"name": r.name, "ids": r.ids, "tokens": r.labels, "probs": r.probs}
                    for r in rows
                ],
            }
        )
    else:
        show(views.lens_view(rows, traced.labels, colour(no_color), stdout().width))


# ---- next-token distribution ------------------------------------------------------------


def parse_temperatures(text: str) -> list[float]:
    """ "0.5,1,2" -> [0.5, 1.0, 2.0]; each a number of at least 0 (0: greedy)."""
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        values = []
    if not values or not all(math.isfinite(v) and v >= 0 for v in values):
        raise ConfigError(
            f"cannot read --temperature {text!r}; give numbers of at least 0 separated by "
            "commas, such as 0.5,1,2"
        )
    if len(values) > MAX_TEMPERATURES:
        raise ConfigError(f"--temperature takes at most {MAX_TEMPERATURES} values (columns)")
    return values


def next_token(
    *,
    prompt: PromptOpt = "",
    temperature: Annotated[
        str,
        option(
            "Temperatures to compare, separated by commas (0: greedy).",
            "--temperature",
            "--temp",
            default="0.5,1,2",
            metavar="LIST",
        ),
    ] = "0.5,1,2",
    top_k: Annotated[
        int | None,
        option("Keep only the k likeliest tokens.", "--top-k", default="off", metavar="K"),
    ] = None,
    top_p: Annotated[
        float | None,
        option("Keep the likeliest tokens up to mass p.", "--top-p", default="off", metavar="P"),
    ] = None,
    min_p: Annotated[
        float | None,
        option(
            "Drop tokens less likely than min-p x the likeliest.",
            "--min-p",
            default="off",
            metavar="P",
        ),
    ] = None,
    show_n: Annotated[
        int,
        option("How many of the likeliest tokens to list.", "--show", default="10", metavar="N"),
    ] = 10,
    as_json: JsonOpt = False,
    no_color: NoColorOpt = False,
    checkpoint: opts.CheckpointOpt = None,
    root: opts.RootOpt = Path("checkpoints"),
    device: DeviceOpt = "cpu",
    threads: opts.ThreadsOpt = None,
) -> None:
    """The next token's distribution at several temperatures, and what the filters cut.

    The numbers are the sampler's own (`minigpt sample`): temperature, then top-k, top-p
    and min-p. Rows are the model's likeliest tokens; then the entropy and how many
    tokens each filter keeps.
    """
    temperatures = parse_temperatures(temperature)
    in_range(show_n, 1, "--show")
    config = SampleConfig(top_k=top_k, top_p=top_p, min_p=min_p)
    ckpt = load(checkpoint, root, device, threads)
    view = next_distribution(
        ckpt.model, ckpt.tokenizer, prompt_text(prompt), temperatures, config, show=show_n
    )
    if as_json:
        print_json(next_record(view, config))
    else:
        model_entropy = entropy_bits(view.model_probs.log())
        show(views.next_view(view, model_entropy, colour(no_color)))


def next_record(view: NextView, config: SampleConfig) -> dict[str, Any]:
    """The shown tokens' probabilities, and each temperature's entropy and counts."""
    return {
        "tokens": view.labels,
        "filters": {"top_k": config.top_k, "top_p": config.top_p, "min_p": config.min_p},
        "temperatures": [
            {
                "temperature": at.temperature,
                "entropy_bits": at.entropy_bits,
                "kept": at.kept,
                "kept_by": at.kept_by,
            }
            for at in view.temperatures
        ],
        "top": [
            {
                "id": i,
                "token": label,
                "model": float(view.model_probs[i]),
                "probs": [float(at.probs[i]) for at in view.temperatures],
            }
            for i, label in zip(view.top_ids, view.top_labels, strict=True)
        ],
    }


# ---- surprise ---------------------------------------------------------------------------


def surprise_command(
    file: Annotated[
        Path | None,
        typer.Argument(help="A UTF-8 text file to score.", metavar="FILE", show_default=False),
    ] = None,
    *,
    text: Annotated[
        str | None,
        option("Score this text instead of a file.", "--text", default="none", metavar="TEXT"),
    ] = None,
    as_json: JsonOpt = False,
    no_color: NoColorOpt = False,
    checkpoint: opts.CheckpointOpt = None,
    root: opts.RootOpt = Path("checkpoints"),
    device: DeviceOpt = "cpu",
    threads: opts.ThreadsOpt = None,
) -> None:
    """How surprised the model is by each token of a text, and its bits per byte.

    Each token's loss is -log2 of the probability the model gave it after the tokens
    before it. On a terminal the text is coloured by it; in a pipe each token is
    followed by its loss in brackets: token[bits].
    """
    content = surprise_text(file, text)
    ckpt = load(checkpoint, root, device, threads)
    scored = surprise(ckpt.model, ckpt.tokenizer, content)
    if as_json:
        print_json(
            {
                "tokens": scored.labels,
                "ids": scored.ids,
                "bits": scored.bits,
                "bits_per_byte": scored.bits_per_byte,
                "scored_bytes": scored.scored_bytes,
            }
        )
    else:
        console = stdout()
        show(views.surprise_view(ckpt.tokenizer, scored, colour(no_color), console.width))


def surprise_text(file: Path | None, text: str | None) -> str:
    """The text to score: FILE's (UTF-8, as `sample --prompt-file` reads it) or --text."""
    if file is not None and text is not None:
        raise ConfigError("give a FILE or --text TEXT, not both")
    if file is not None:
        return read_prompt("", file)
    if text is None:
        raise ConfigError("give a FILE to score, or --text TEXT")
    return user_text(text, "--text")


# ---- report -----------------------------------------------------------------------------


def report(
    *,
    prompt: PromptOpt = "",
    out: Annotated[
        Path,
        option("The .html file to write.", "--out", "-o", default="report.html", metavar="FILE"),
    ] = Path("report.html"),  # fmt: skip
    checkpoint: opts.CheckpointOpt = None,
    root: opts.RootOpt = Path("checkpoints"),
    device: DeviceOpt = "cpu",
    threads: opts.ThreadsOpt = None,
) -> None:
    """Every view on one page: weights, attention, positions, embeddings, the logit
    lens, the next token at three temperatures and the prompt's surprise.

    One self-contained .html file (no network, no CDN): open it in any browser.
    """
    out = check_html(out)
    ckpt = load(checkpoint, root, device, threads)
    page = report_html(ckpt.model, ckpt.tokenizer, prompt_text(prompt), f"inside {ckpt.path}")
    write_atomic(out, page.encode())
    stdout().print(f"wrote {out}", markup=False, soft_wrap=True)
