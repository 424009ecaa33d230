"""What `minigpt inspect positions` shows in a terminal: a position table as a heatmap,
how alike positions are by distance, the learner's question as a table, and RoPE's
frequencies and score curve; the shared pieces are `inspect_views`'."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import RenderableType
from rich.text import Text

from minigpt.cli.heatmap import (
    heatmap,
    label_width,
    legend,
    picked,
    signed_matrix,
    sparkline,
)
from minigpt.cli.inspect_views import note, quote, table, titled
from minigpt.inspect.positions import RopeView, Shift

ROPE_NOTE = (
    "RoPE adds nothing to the token embeddings: it rotates each query and key by an angle "
    "proportional to its position, so a score depends on the distance between them, and "
    "whether a position makes a token look like another token does not arise."
)
SIGNS = {True: "blue: negative, red: positive", False: "=: negative, #: positive"}
TABLE_ROWS = 24  # the position table shows at most this many positions
ROPE_PAIRS = 16  # ... and RoPE's table at most this many channel pairs


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
