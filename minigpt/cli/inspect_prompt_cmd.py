"""`minigpt inspect attention | lens | next | surprise | report`: views of the model
running on a prompt (or, for surprise, on a text)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated

import typer

from minigpt.cli import inspect_views as views
from minigpt.cli import options as opts
from minigpt.cli import prediction_views as predictions
from minigpt.cli.inspect_options import (
    MAX_LENS_TOP,
    MAX_TEMPERATURES,
    HtmlOpt,
    JsonOpt,
    NoColorOpt,
    PngOpt,
    PromptOpt,
    check_html,
    colour,
    in_range,
    load,
    print_json,
    prompt_text,
    show,
    wrote,
)
from minigpt.cli.sample_cmd import read_prompt
from minigpt.cli.settings import option
from minigpt.cli.terminal import stdout, user_text
from minigpt.config import SampleConfig
from minigpt.errors import ConfigError
from minigpt.fileio import write_atomic
from minigpt.inspect import plots, records
from minigpt.inspect.attention import attention_lists, check_head, head_stages
from minigpt.inspect.forward import trace_prompt
from minigpt.inspect.html import attention_html, report_html
from minigpt.inspect.lens import logit_lens
from minigpt.inspect.nextdist import entropy_bits, next_distribution
from minigpt.inspect.surprise import surprise

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
    device: opts.DeviceOpt = "auto",
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
        record = records.attention_record(traced)
        if layer is not None and head is not None:
            record["stages"] = records.stages_record(head_stages(traced, layer, head))
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
    device: opts.DeviceOpt = "auto",
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
        print_json(records.lens_record(traced, rows))
    else:
        show(predictions.lens_view(rows, traced.labels, colour(no_color), stdout().width))


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
    device: opts.DeviceOpt = "auto",
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
        print_json(records.next_record(view, config))
    else:
        model_entropy = entropy_bits(view.model_probs.log())
        show(predictions.next_view(view, model_entropy, colour(no_color)))


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
    device: opts.DeviceOpt = "auto",
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
        print_json(records.surprise_record(scored))
    else:
        console = stdout()
        show(predictions.surprise_view(ckpt.tokenizer, scored, colour(no_color), console.width))


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
    device: opts.DeviceOpt = "auto",
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
