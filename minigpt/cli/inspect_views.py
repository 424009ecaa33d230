"""What `minigpt inspect` shows in a terminal: each view's data (`minigpt.inspect`) as
rich renderables that fit the console's width, in colour or as plain text.

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
    picked,
    signed_matrix,
    sparkline,
)
from minigpt.cli.options import probability_legend, probability_style
from minigpt.inspect.attention import STAGES, HeadStages
from minigpt.inspect.embeddings import Neighbour
from minigpt.inspect.lens import LensRow
from minigpt.inspect.nextdist import NextView
from minigpt.inspect.positions import RopeView, Shift
from minigpt.inspect.surprise import Surprise
from minigpt.inspect.weights import WeightReport
from minigpt.tokenizer.encodings import Tokenizer
from minigpt.tokenizer.pieces import token_pieces

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
ROPE_NOTE = (
    "RoPE adds nothing to the token embeddings: it rotates each query and key by an angle "
    "proportional to its position, so a score depends on the distance between them, and "
    "whether a position makes a token look like another token does not arise."
)
SIGNS = {True: "blue: negative, red: positive", False: "=: negative, #: positive"}
TABLE_ROWS = 24  # the position table shows at most this many positions
ROPE_PAIRS = 16  # ... and RoPE's table at most this many channel pairs
LENS_CELL = 8  # the width of a logit-lens cell
LENS_NAME = 11  # ... and of its row names


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


# ---- positions --------------------------------------------------------------------------


def distances(n: int) -> list[int]:
    """0, 1, 2, 3, 4, 6, 8, 12, 16, ... below n, and n - 1."""
    steps = {0, 1, 2, 3}
    k = 4
    while k < n:
        steps |= {k, k * 3 // 2}
        k *= 2
    return sorted(d for d in steps | {n - 1} if 0 <= d < n)


def table_view(
    table_values: Sequence[Sequence[float]], title: str, colour: bool, width: int
) -> list[RenderableType]:
    """The position table as a shaded grid, evenly spaced positions and channels."""
    n_pos, n_ch = len(table_values), len(table_values[0])
    rows = picked(n_pos, TABLE_ROWS)
    labels = [f"pos {r}" for r in rows]
    channels = picked(n_ch, max(1, width - label_width(labels) - 1))
    m = signed_matrix(title, [[table_values[r][c] for c in channels] for r in rows])
    shown: list[RenderableType] = [heatmap([m], labels, None, colour, False, width)]
    shown.append(legend(m, colour).append(f"  ({SIGNS[colour]})"))
    if len(rows) < n_pos or len(channels) < n_ch:
        shown.append(
            note(
                f"{len(rows)} of {n_pos} positions and {len(channels)} of {n_ch} "
                "channels, evenly spaced (--json and --png have all)"
            )
        )
    return shown


def similarity_view(
    first: Sequence[float], mean: Sequence[float], width: int
) -> list[RenderableType]:
    """The cosine similarity of position vectors against their distance."""
    t = table()
    t.add_column("d", justify="right")
    t.add_column("position 0 and d", justify="right")
    t.add_column("mean of all pairs d apart", justify="right")
    for d in distances(len(mean)):
        t.add_row(str(d), f"{first[d]:.3f}", f"{mean[d]:.3f}")
    shown = picked(len(mean), max(1, width - 12))
    line = Text("mean by d  ", style="dim").append(sparkline([mean[d] for d in shown], -1.0, 1.0))
    title = "how alike two positions' vectors are (cosine), by their distance d"
    return [*titled(title, t), line, note(f"d from 0 to {len(mean) - 1}; bars from -1 to 1")]


SHIFTS_TITLE = "does adding its position make a token look like another token?"
SHIFTS_CAPTION = (
    "nearest: the vocabulary embedding nearest (cosine) to the token's embedding plus its "
    "position, as the first layer receives it; own: the cosine with the token's own embedding"
)


def shifts_table(shifts: Sequence[Shift]) -> list[RenderableType]:
    """The learner's question: does adding the position make a token look like another?"""
    t = table()
    for name, justify in (
        ("#", "right"),
        ("token", "left"),
        ("nearest", "left"),
        ("cosine", "right"),
        ("own", "right"),
        ("changed", "left"),
    ):
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in shifts:
        changed = Text("yes", style="yellow") if s.changed else Text("no", style="dim")
        t.add_row(
            str(s.position),
            Text(quote(s.label)),
            Text(quote(s.nearest_label)),
            f"{s.cosine:.3f}",
            f"{s.own_cosine:.3f}",
            changed,
        )
    return titled(SHIFTS_TITLE, t, SHIFTS_CAPTION)


def rope_view(view: RopeView, width: int) -> list[RenderableType]:
    """RoPE's frequencies and wavelengths, and a score against distance."""
    n = len(view.frequencies)
    pairs = picked(n, ROPE_PAIRS)
    t = table()
    t.add_column("pair", justify="right")
    t.add_column("radians per position", justify="right")
    t.add_column("wavelength (positions per turn)", justify="right")
    for i in pairs:
        t.add_row(str(i), f"{view.frequencies[i]:.4g}", f"{view.wavelengths[i]:,.1f}")
    shown = [note(ROPE_NOTE), *titled(f"each channel pair's rotation ({n} pairs per head)", t)]
    if len(pairs) < n:
        shown.append(note(f"{len(pairs)} of {n} pairs, evenly spaced (--json has all)"))
    shown += score_curve(view, width)
    return shown


def score_curve(view: RopeView, width: int) -> list[RenderableType]:
    """The score of a query and key of ones against their distance: numbers and a line."""
    t = table()
    t.add_column("d", justify="right")
    t.add_column("score", justify="right")
    for d in distances(len(view.scores)):
        t.add_row(str(d), f"{view.scores[d]:.3f}")
    shown = picked(len(view.scores), max(1, width - 12))
    low, high = min(view.scores), max(view.scores)
    line = Text("score by d ", style="dim").append(
        sparkline([view.scores[d] for d in shown], low, high)
    )
    title = "score of a query and a key of ones, both rotated, by their distance d"
    caption = "the score: their dot product divided by the head size (1 at d = 0)"
    end = note(f"d from 0 to {len(view.scores) - 1}; bars from {low:.2f} to {high:.2f}")
    return [*titled(title, t, caption), line, end]


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


# ---- logit lens -------------------------------------------------------------------------


def lens_view(
    rows: Sequence[LensRow], labels: Sequence[str], colour: bool, width: int
) -> list[RenderableType]:
    """Stages down, positions across: each cell the likeliest next tokens there."""
    n = max(1, min(len(labels), (width - LENS_NAME - 3) // (LENS_CELL + 3)))
    first = len(labels) - n
    t = table()
    t.show_lines = True
    t.add_column("", min_width=LENS_NAME, max_width=LENS_NAME, no_wrap=True)
    for i in range(first, len(labels)):
        head = Text(f"{i}\n").append(quote(labels[i]))
        t.add_column(head, min_width=LENS_CELL, max_width=LENS_CELL, no_wrap=True)
    for r, row in enumerate(rows):
        name = row.name + ("\n= output" if r == len(rows) - 1 else "")
        cells = [lens_cell(row, i, colour) for i in range(first, len(labels))]
        t.add_row(Text(name, style="bold" if r == len(rows) - 1 else ""), *cells)
    title = "the logit lens: what each layer would predict next, at each position"
    caption = (
        f"each cell: the likeliest next token after the token above it, and its probability; "
        f"layer k: after k blocks; the last row ({rows[-1].name}) is the model's own prediction"
    )
    shown = [*titled(title, t, caption), *probability_key(colour)]
    if n < len(labels):
        shown.append(
            note(f"the last {n} of {len(labels)} positions fit this width (--json has all)")
        )
    return shown


def lens_cell(row: LensRow, position: int, colour: bool) -> Text:
    """One position's candidates: each a token line and a probability line."""
    cell = Text()
    for k, (label, p) in enumerate(zip(row.labels[position], row.probs[position], strict=True)):
        cell.append("\n" if k else "").append(quote(label))
        shown = f"{p:.2f}" if p >= 0.01 or p == 0 else f"{p:.0e}"
        cell.append(f"\n{shown}", style=probability_style(p) if colour else "")
    return cell


def probability_key(colour: bool) -> list[Text]:
    """What the probability colours mean (nothing without colour)."""
    if not colour:
        return []
    key = Text("probabilities: ", style="dim")
    for i, (text, style) in enumerate(probability_legend()):
        key.append(", " if i else "").append(text, style=style)
    return [key]


# ---- next-token distribution ------------------------------------------------------------


def probability(p: float) -> Text:
    """p to 3 decimals (a small one as 3e-05, never a misleading 0.000), coloured; a
    token a filter removed as "cut"."""
    if p == 0.0:
        return Text("cut", style="dim")
    shown = f"{p:.3f}" if p >= 0.001 else f"{p:.0e}"
    return Text(shown, style=probability_style(p))


NEXT_CAPTION = (
    "model: the model's own probability (temperature 1, no filters); T=: what `minigpt "
    "sample` draws from at that temperature after top-k, top-p and min-p (cut: a filter "
    "removed the token); the entropy is before the filters"
)


def next_view(view: NextView, model_entropy: float, colour: bool) -> list[RenderableType]:
    """The model's likeliest tokens down, temperatures across, then entropy and counts."""
    t = table()
    t.add_column("#", justify="right", style="dim")
    t.add_column("token", max_width=16, no_wrap=True)
    t.add_column("model", justify="right")
    for at in view.temperatures:
        t.add_column(f"T={at.temperature:g}", justify="right")
    for rank, (i, label) in enumerate(zip(view.top_ids, view.top_labels, strict=True), 1):
        cells = [probability(float(at.probs[i])) for at in view.temperatures]
        t.add_row(str(rank), Text(quote(label)), probability(float(view.model_probs[i])), *cells)
    t.add_section()
    entropies = [f"{at.entropy_bits:.2f}" for at in view.temperatures]
    t.add_row("", "entropy (bits)", f"{model_entropy:.2f}", *entropies)
    t.add_row("", "tokens kept", "", *[f"{at.kept:,}" for at in view.temperatures])
    for name in view.temperatures[0].kept_by:
        t.add_row("", f"kept by {name}", "", *[f"{at.kept_by[name]:,}" for at in view.temperatures])
    title = (
        f"the next token after the prompt ({len(view.labels)} tokens, ending "
        f"{quote(''.join(view.labels[-3:]))})"
    )
    return [*titled(title, t, NEXT_CAPTION), *probability_key(colour)]


# ---- surprise ---------------------------------------------------------------------------


def bits_style(bits: float | None) -> str:
    """A token's colour by its probability 2^-bits, as everywhere (green ≥ 0.5 ...)."""
    if bits is None:
        return "dim"
    return f"black on {probability_style(2.0**-bits)}"


def line_ends(tok: Tokenizer, ids: Sequence[int]) -> list[bool]:
    """Whether each token holds a newline (the text's lines are kept)."""
    return [
        any(part.kind != "bytes" and "\n" in part.text for part in piece.parts)
        for piece in token_pieces(tok, ids)
    ]


def surprise_pieces(s: Surprise, ends: Sequence[bool], colour: bool) -> list[tuple[Text, bool]]:
    """Each token as shown, coloured or as token[bits], and whether a line ends after it."""
    pieces = []
    for label, bits, ends_line in zip(s.labels, s.bits, ends, strict=True):
        if colour:
            piece = Text(label, style=bits_style(bits))
        else:
            piece = Text(f"{label}[{'-' if bits is None else f'{bits:.1f}'}]")
        pieces.append((piece, ends_line))
    return pieces


def wrapped(pieces: Sequence[tuple[Text, bool]], width: int) -> Text:
    """Pieces in lines of at most `width` cells, broken between pieces only (a piece
    wider than a line is cut into lines), and after each piece that ends a line."""
    lines: list[Text] = []
    line = Text()
    for piece, ends_line in pieces:
        if line.cell_len + piece.cell_len > width and line:
            lines.append(line)
            line = Text()
        while piece.cell_len > width:
            lines.append(piece[:width])
            piece = piece[width:]
        line.append_text(piece)
        if ends_line:
            lines.append(line)
            line = Text()
    if line:
        lines.append(line)
    return Text("\n").join(lines)


def surprise_view(tok: Tokenizer, s: Surprise, colour: bool, width: int) -> list[RenderableType]:
    """The text coloured by each token's loss (or token[bits]), the key, bits per byte."""
    total = sum(b for b in s.bits if b is not None)
    pieces = surprise_pieces(s, line_ends(tok, s.ids), colour)
    shown: list[RenderableType] = [wrapped(pieces, width), Text("")]
    if colour:
        key = Text().append("each token's loss: ", style="dim")
        for text, (colour_name, floor) in zip(
            ("≤ 1 bit", "≤ 3.3 bits"), (("green", 0.5), ("yellow", 0.1)), strict=True
        ):
            key.append(f"{text} (p ≥ {floor})", style=f"black on {colour_name}").append(", ")
        shown.append(
            key.append("more", style="black on red").append(
                "; the first token is not scored", style="dim"
            )
        )
    else:
        shown.append(
            note(
                "each token[its loss in bits]: -log2 of the model's probability of it "
                "given the tokens before; the first token [-] is not scored"
            )
        )
    shown.append(
        Text(
            f"{s.bits_per_byte:.3f} bits per byte ({total:,.1f} bits over "
            f"{s.scored_bytes:,} bytes of {len(s.ids) - 1:,} scored tokens)"
        )
    )
    return shown
