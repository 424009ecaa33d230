"""Matrices and curves drawn in a terminal, in colour or as plain characters.

A heatmap is one or more matrices side by side sharing their row labels. Each cell is
a number on a coloured background (when the numbers fit), or a shaded cell: a
background colour, or without colour a character from a ramp (` .:-=+*#%@` from 0 to
1; `=-, .+#` from negative through 0 to positive for signed values). A masked cell
(-inf) shows as `·`. Columns are labelled by text (numbers mode) or by their index
written downwards. Everything is built from rich `Text`, never markup, since labels
are model tokens that may hold "[".

A sparkline draws a curve as one row of block characters (`▁▂▃▄▅▆▇█`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rich.color import Color
from rich.style import Style
from rich.text import Text

RAMP = " .:-=+*#%@"  # 0 .. 1
SIGNED_RAMP = "=-, .+#"  # strongly negative .. 0 .. strongly positive
MASKED = "·"
BARS = "▁▂▃▄▅▆▇█"
GAP = 2  # cells between matrices side by side
# Anchors of the colour scales: viridis for 0 .. 1, blue-white-red for signed values.
SEQUENTIAL = ((68, 1, 84), (59, 82, 139), (33, 145, 140), (94, 201, 98), (253, 231, 37))
DIVERGING = ((33, 102, 172), (146, 197, 222), (247, 247, 247), (244, 165, 130), (178, 24, 43))


@dataclass(frozen=True)
class Matrix:
    """One matrix to draw: rows x columns of values (-inf: masked), a title above it,
    the scale (`low`..`high`; signed: -`high`..`high`) and the decimals of a number."""

    title: str
    values: Sequence[Sequence[float]]
    low: float
    high: float
    signed: bool = False
    decimals: int = 2


def span(values: Sequence[Sequence[float]]) -> tuple[float, float]:
    """The smallest and largest finite value (0, 1 when there are none)."""
    finite = [v for row in values for v in row if math.isfinite(v)]
    return (min(finite), max(finite)) if finite else (0.0, 1.0)


def signed_matrix(title: str, values: Sequence[Sequence[float]]) -> Matrix:
    """A matrix of signed values, scaled so that 0 is the middle of the scale, with two
    decimals below 10, one below 100, none beyond."""
    low, high = span(values)
    largest = max(abs(low), abs(high))
    decimals = 2 if largest < 10 else 1 if largest < 100 else 0
    return Matrix(title, values, -1.0, largest or 1.0, True, decimals)


def compact(value: float, decimals: int) -> str:
    """A number in few characters: no leading zero (.25, -.05), no sign on a zero."""
    text = f"{value:.{decimals}f}"
    if float(text) == 0:
        text = text.lstrip("-")
    return text.replace("0.", ".", 1) if text.lstrip("-").startswith("0.") else text


def level(m: Matrix, value: float) -> float:
    """Where `value` lies on `m`'s scale: 0 .. 1, or -1 .. 1 for signed values."""
    if m.signed:
        return max(-1.0, min(1.0, value / m.high))
    width = m.high - m.low
    return max(0.0, min(1.0, (value - m.low) / width)) if width > 0 else 0.5


def colour_at(t: float, anchors: Sequence[tuple[int, int, int]]) -> Color:
    """The colour at `t` (0 .. 1) between evenly spaced anchors."""
    x = t * (len(anchors) - 1)
    i = min(int(x), len(anchors) - 2)
    f = x - i
    a, b = anchors[i], anchors[i + 1]
    r, g, bl = (round(a[k] + (b[k] - a[k]) * f) for k in range(3))
    return Color.from_rgb(r, g, bl)


def cell_style(m: Matrix, value: float) -> Style:
    """The background of a cell, and black or white text that reads on it."""
    t = level(m, value)
    colour = colour_at((t + 1) / 2, DIVERGING) if m.signed else colour_at(t, SEQUENTIAL)
    r, g, b = colour.get_truecolor()
    light = 0.299 * r + 0.587 * g + 0.114 * b > 140
    return Style(color="black" if light else "white", bgcolor=colour)


def shade(m: Matrix, value: float, width: int, colour: bool) -> Text:
    """A shaded cell `width` wide."""
    if not math.isfinite(value):
        return Text(MASKED.rjust(width), style="dim")
    if colour:
        return Text(" " * width, style=cell_style(m, value))
    t = level(m, value)
    if m.signed:
        char = SIGNED_RAMP[round((t + 1) / 2 * (len(SIGNED_RAMP) - 1))]
    else:
        char = RAMP[round(t * (len(RAMP) - 1))]
    return Text(char * width)


def written(m: Matrix, value: float) -> str:
    """A cell's number as written (-inf as itself)."""
    return "-inf" if value == -math.inf else compact(value, m.decimals)


def number_cell(m: Matrix, value: float, width: int, colour: bool) -> Text:
    """A number right-aligned in `width` cells, on its colour when `colour`."""
    text = written(m, value).rjust(width)
    if not math.isfinite(value):
        return Text(text, style="dim")
    return Text(text, style=cell_style(m, value) if colour else "")


def fit(label: str, width: int, right: bool = False, style: str = "") -> Text:
    """`label` in exactly `width` cells: cut with an ellipsis, padded with spaces."""
    text = Text(label, style=style, no_wrap=True)
    text.truncate(width, overflow="ellipsis")
    padding = " " * (width - text.cell_len)
    return Text(padding).append_text(text) if right else text.append(padding)


def number_width(matrices: Sequence[Matrix]) -> int:
    """The cell width of numbers mode: the longest number, and a space before it."""
    return 1 + max(len(written(m, v)) for m in matrices for row in m.values for v in row)


def label_width(labels: Sequence[str], most: int = 14) -> int:
    """The width of the row label column: the longest label, at most `most` cells."""
    return min(max((Text(label).cell_len for label in labels), default=0), most)


def heatmap_width(n_matrices: int, n_columns: int, label: int, cell: int) -> int:
    """The cells a heatmap line takes."""
    return label + 1 + n_matrices * n_columns * cell + (n_matrices - 1) * GAP


def index_header(n_columns: int, first: int, cell: int) -> list[str]:
    """Column indices written downwards, aligned at the bottom, one column per cell."""
    digits = [str(first + i) for i in range(n_columns)]
    rows = max(len(d) for d in digits)
    return ["".join(d.rjust(rows)[r].rjust(cell) for d in digits) for r in range(rows)]


def heatmap(
    matrices: Sequence[Matrix],
    rows: Sequence[str],
    columns: Sequence[str] | None,
    colour: bool,
    numbers: bool,
    width: int,
    first_index: int = 0,
) -> Text:
    """Matrices side by side (each rows x columns) with shared row labels. `numbers`:
    cells hold their numbers, headed by `columns`; else shaded cells (two characters
    wide when that fits in `width`) headed by their index from `first_index`, or by
    nothing when `columns` is None."""
    label = label_width(rows)
    n_columns = len(matrices[0].values[0]) if matrices[0].values else 0
    if numbers:
        cell = number_width(matrices)
    else:
        cell = 2 if heatmap_width(len(matrices), n_columns, label, 2) <= width else 1
    block = n_columns * cell
    lines = [title_line(matrices, label, block)]
    lines += header_lines(matrices, columns, label, block, cell, numbers, first_index)
    for r, row_label in enumerate(rows):
        line = fit(row_label, label).append(" ")
        for i, m in enumerate(matrices):
            line.append(" " * GAP if i else "")
            for value in m.values[r]:
                cells = number_cell if numbers else shade
                line.append_text(cells(m, value, cell, colour))
        lines.append(line)
    return Text("\n").join(lines)


def title_line(matrices: Sequence[Matrix], label: int, block: int) -> Text:
    """The matrices' titles, each over its matrix (a single one as long as it is)."""
    line = Text(" " * (label + 1))
    if len(matrices) == 1:
        return line.append(matrices[0].title, style="bold")
    for i, m in enumerate(matrices):
        line.append(" " * GAP if i else "").append_text(fit(m.title, block, style="bold"))
    return line


def header_lines(
    matrices: Sequence[Matrix],
    columns: Sequence[str] | None,
    label: int,
    block: int,
    cell: int,
    numbers: bool,
    first_index: int,
) -> list[Text]:
    """The column labels over every matrix: text, or indices written downwards."""
    n_columns = block // cell if cell else 0
    if numbers and columns is not None:
        one = Text().join(fit(c, cell - 1, right=True).append(" ") for c in columns)
        heads = [one]
    elif columns is None and not numbers:
        return []
    else:
        heads = [Text(line) for line in index_header(n_columns, first_index, cell)]
    lines = []
    for head in heads:
        line = Text(" " * (label + 1), style="dim")
        for i in range(len(matrices)):
            line.append(" " * GAP if i else "").append_text(head)
        line.stylize("dim")
        lines.append(line)
    return lines


def legend(m: Matrix, colour: bool, steps: int = 10) -> Text:
    """What the shading means: low value, the scale, high value."""
    low, high = (-m.high, m.high) if m.signed else (m.low, m.high)
    bar = Text()
    for i in range(steps):
        value = low + (high - low) * i / (steps - 1)
        bar.append_text(shade(m, value, 1, colour))
    return (
        Text(f"{compact(low, m.decimals)} ")
        .append_text(bar)
        .append(f" {compact(high, m.decimals)}")
    )


def picked(n: int, most: int) -> list[int]:
    """At most `most` evenly spaced indices of 0 .. n - 1, the first and last kept."""
    if n <= most:
        return list(range(n))
    if most <= 1:
        return [0]
    return sorted({round(i * (n - 1) / (most - 1)) for i in range(most)})


def sparkline(values: Sequence[float], low: float, high: float) -> str:
    """`values` as one row of block characters, `low` the lowest and `high` the highest."""
    width = high - low
    chars = []
    for v in values:
        t = (v - low) / width if width > 0 else 0.5
        chars.append(BARS[max(0, min(len(BARS) - 1, round(t * (len(BARS) - 1))))])
    return "".join(chars)
