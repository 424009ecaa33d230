"""What `minigpt inspect` shows in a terminal: each view's data (`minigpt.inspect`) as
rich renderables that fit the console's width, in colour or as plain text. Here: the
shared pieces, weights, attention and embeddings; positions in `position_views`, the
model's predictions (lens, next, surprise) in `prediction_views`.

Tokens show as they read (`minigpt.tokenizer.pieces`), between quotes in tables so
that a leading space is seen. Nothing here computes what a view means; it picks what
fits (the last tokens of a long prompt, evenly spaced rows of a large table) and says
so in a dim note.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from rich import box
from rich.console import RenderableType
from rich.table import Table
from rich.text import Text

from minigpt.cli.heatmap import (
    Matrix,
    heatmap,
    heatmap_width,
    label_width,
    legend,
    number_width,
    signed_matrix,
)
from minigpt.inspect.attention import STAGES, HeadStages
from minigpt.inspect.embeddings import Neighbour
from minigpt.inspect.weights import WeightReport

TIED_NOTE = "the unembedding is the embedding matrix (tied): counted once, as the embedding"
LAYERS_SHOWN = 8  # models with at most this many layers show the per-layer table unasked
SHORT = {
    "query": "q",
    "key": "k",
    "value": "v",
    "attention output": "out",
    "up-projection": "up",
    "down-projection": "down",
}
STAGE_TITLES = {
    "scores": "1. scores: Q·Kᵀ",
    "scaled": "2. scaled: Q·Kᵀ / √d_k",
    "masked": "3. masked: a query never sees a later key (-inf)",
    "softmax": "4. softmax: each row sums to 1 (the weights used)",
}
AXES_NOTE = (
    "rows: queries (the token looking), columns: keys (the token looked at), numbered "
    "from 0 as are --layer and --head"
)


def quote(label: str) -> str:
    """A token label between quotes (double when it holds a single quote)."""
    mark = '"' if "'" in label and '"' not in label else "'"
    return f"{mark}{label}{mark}"


def note(text: str) -> Text:
    """A dim line that explains or says what was left out."""
    return Text(text, style="dim")


def number(x: float) -> str:
    """A statistic in 3 significant digits."""
    return f"{x:.3g}"


def table(lines: bool = True) -> Table:
    """A table in the style of every inspect view: no outer edge; without `lines`, no
    lines between columns either (narrower)."""
    if lines:
        return Table(box=box.HEAVY_HEAD, show_edge=False)
    return Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)


def titled(title: str, t: Table, caption: str = "") -> list[RenderableType]:
    """A table with its title above and its caption below, each as wide as the screen
    (a table's own title and caption are only as wide as the table)."""
    return [Text(title, style="bold"), t, *([note(caption)] if caption else [])]


# ---- weights ----------------------------------------------------------------------------


def weights_view(report: WeightReport, n_layer: int, layers: bool) -> list[RenderableType]:
    """The categories table, the tied note, and the per-layer table (or how to see it)."""
    shown = titled(f"{report.total:,} parameters by role", categories_table(report))
    if report.tied:
        shown.append(note(TIED_NOTE))
    if layers or n_layer <= LAYERS_SHOWN:
        shown += layers_table(report)
    else:
        shown.append(note(f"--layers shows each of the {n_layer} layers"))
    return shown


def categories_table(report: WeightReport) -> Table:
    """One row per category: count, share of the total, RMS, min and max; then the total."""
    t = table()
    t.add_column("category")
    for name in ("count", "share", "RMS", "min", "max"):
        t.add_column(name, justify="right")
    for row in report.categories:
        s = row.stats
        stats = (number(s.rms), number(s.min), number(s.max)) if s.count else ("-",) * 3
        style = "" if s.count else "dim"
        t.add_row(row.category, f"{s.count:,}", f"{row.share:.1%}", *stats, style=style)
    t.add_section()
    t.add_row("total", f"{report.total:,}", "100.0%", "", "", "", style="bold")
    return t


def layers_table(report: WeightReport) -> list[RenderableType]:
    """One row per layer: its parameter count and the RMS of each role's weights."""
    by_layer: dict[int, dict[str, tuple[int, float]]] = defaultdict(dict)
    for row in report.layers:
        by_layer[row.layer or 0][row.category] = (row.stats.count, row.stats.rms)
    roles = [c for c in dict.fromkeys(r.category for r in report.layers)]
    t = table(lines=False)
    t.add_column("layer", justify="right")
    t.add_column("params", justify="right")
    for c in roles:
        t.add_column(SHORT.get(c, c), justify="right")
    for layer, parts in sorted(by_layer.items()):
        count = sum(n for n, _ in parts.values())
        rms = [f"{parts[c][1]:.3f}" if c in parts else "-" for c in roles]
        t.add_row(str(layer), f"{count:,}", *rms)
    title = "each layer (from 0): parameters, and the RMS of each role's weights"
    return titled(title, t, ", ".join(f"{SHORT[c]}: {c}" for c in roles if c in SHORT))


# ---- attention --------------------------------------------------------------------------


def token_rows(labels: Sequence[str], first: int = 0) -> list[str]:
    """Row labels: each token's position and its label."""
    digits = len(str(first + len(labels) - 1))
    return [f"{first + i:>{digits}} {quote(label)}" for i, label in enumerate(labels)]


def window(labels: Sequence[str], width: int, cell: int, per_line: int = 1) -> int:
    """How many of the last tokens fit `per_line` matrices of `cell`-wide cells."""
    label = label_width(token_rows(labels))
    n = len(labels)
    while n > 1 and heatmap_width(per_line, n, label, cell) > width:
        n -= 1
    return n


def cropped(values: Sequence[Sequence[float]], n: int) -> list[list[float]]:
    """The last n rows and columns of a square matrix."""
    return [list(row[-n:]) for row in values[-n:]]


def stage_matrix(stages: HeadStages, stage: str, n: int) -> Matrix:
    """One stage of a head as a matrix: signed scores, or weights from 0 to 1."""
    values = cropped(getattr(stages, stage).tolist(), n)
    title = STAGE_TITLES[stage].replace("d_k", str(stages.d_k))
    if stage == "softmax":
        return Matrix(title, values, 0.0, 1.0)
    return signed_matrix(title, values)


def stages_view(
    stages: HeadStages, labels: Sequence[str], colour: bool, width: int
) -> list[RenderableType]:
    """The four stages of one head, each a grid: numbers when they fit, else shading."""
    matrices = [stage_matrix(stages, s, len(labels)) for s in STAGES]
    rows = token_rows(labels)
    numbers = heatmap_width(1, len(labels), label_width(rows), number_width(matrices)) <= width
    n = len(labels) if numbers else window(labels, width, 1)
    shown: list[RenderableType] = [
        Text(f"layer {stages.layer} head {stages.head} (d_k = {stages.d_k})", style="bold")
    ]
    if n < len(labels):
        matrices = [stage_matrix(stages, s, n) for s in STAGES]
        shown.append(note(cut_note(n, len(labels))))
    first = len(labels) - n
    for m in matrices:
        grid = heatmap(
            [m],
            token_rows(labels[first:], first),
            [quote(x) for x in labels[first:]],
            colour,
            numbers,
            width,
            first_index=first,
        )
        shown += [grid, Text("") if numbers else legend(m, colour)]
    shown.append(note(AXES_NOTE))
    return shown


def side_by_side(count: int, n: int, label: int, width: int) -> int:
    """How many of `count` n x n shaded matrices fit side by side in `width` (at least 1)."""
    return max(
        [k for k in range(1, count + 1) if heatmap_width(k, n, label, 1) <= width], default=1
    )


def cut_note(n: int, total: int) -> str:
    """What a view says when it shows only the last tokens."""
    return f"the last {n} of {total} tokens fit this width (--json and --png have all)"


def heads_view(
    attention: Sequence[Sequence[Sequence[Sequence[float]]]],
    labels: Sequence[str],
    layers: Sequence[int],
    colour: bool,
    width: int,
) -> list[RenderableType]:
    """Every head of `layers` as a compact shaded grid, as many side by side as fit."""
    n = window(labels, width, 1)
    first = len(labels) - n
    rows = token_rows(labels[first:], first)
    per_line = side_by_side(len(attention[0]), n, label_width(rows), width)
    shown: list[RenderableType] = [note(cut_note(n, len(labels)))] if n < len(labels) else []
    for layer in layers:
        shown.append(Text(f"layer {layer}", style="bold"))
        heads = [
            Matrix(f"head {h}", cropped(w, n), 0.0, 1.0) for h, w in enumerate(attention[layer])
        ]
        for start in range(0, len(heads), per_line):
            shown.append(
                heatmap(
                    heads[start : start + per_line],
                    rows,
                    labels[first:],
                    colour,
                    False,
                    width,
                    first_index=first,
                )
            )
    shown += [
        legend(Matrix("", [], 0.0, 1.0), colour).append("  attention weight"),
        note(AXES_NOTE),
    ]
    return shown


# ---- embeddings -------------------------------------------------------------------------


def neighbours_table(title: str, neighbours: Sequence[Neighbour]) -> list[RenderableType]:
    """Tokens ranked by the cosine similarity of their embeddings to what was asked."""
    t = table()
    t.add_column("#", justify="right", style="dim")
    t.add_column("token")
    t.add_column("id", justify="right", style="dim")
    t.add_column("cosine", justify="right")
    for rank, n in enumerate(neighbours, 1):
        t.add_row(str(rank), Text(quote(n.label)), str(n.id), f"{n.cosine:.3f}")
    return titled(title, t)


def embeddings_summary(vocab: int, n_embd: int, tied: bool) -> list[RenderableType]:
    """What the embeddings are, and how to look at them."""
    shared = (
        "the unembedding is the same matrix (tied)"
        if tied
        else "the unembedding is a matrix of its own"
    )
    return [
        Text(f"{vocab:,} tokens, each embedded as a vector of {n_embd} numbers; {shared}."),
        note("--near TOKEN: the tokens whose embeddings point most nearly the same way"),
        note('--analogy "a - b + c": embedding arithmetic (each term one token)'),
        note("--png FILE: the tokens on a 2-D map (PCA)"),
    ]
