"""`minigpt inspect ... --png FILE`: the inspect views drawn as PNG images.

- weights: a bar chart of the parameter count of each category;
- attention: a grid of heatmaps, one row per layer and one column per head;
- positions: the position table and the similarity of every pair of positions, or for
  RoPE the score of a query and key against their distance;
- embeddings: the vocabulary's first tokens on the two main directions (PCA), labelled.

matplotlib is optional (`pip install "minigpt[plot]"`) and imported only when drawing.
Each figure is rendered on an Agg canvas of its own, so no window ever opens and the
caller's matplotlib backend is left alone. Token labels are drawn as plain text (a "$"
never starts mathematics), and a glyph the font lacks is drawn as a box, silently.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from minigpt.errors import ConfigError, MissingDependencyError
from minigpt.fileio import PathLike, write_atomic

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure
    from torch import Tensor

    from minigpt.inspect.embeddings import Projection
    from minigpt.inspect.positions import RopeView
    from minigpt.inspect.weights import WeightReport

MAX_TICK_LABELS = 24  # more tokens than this along an axis: ticks are positions only
HEATMAP = "viridis"  # probabilities: 0 dark, 1 bright
SIGNED = "RdBu_r"  # signed values: blue negative, white 0, red positive


def check_png(path: PathLike) -> Path:
    """`path` as a Path; refused unless it ends in .png (checked before any work)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ConfigError(f"--png {path} must be a .png file")
    return path


def figure(width: float, height: float) -> Figure:
    """An empty figure on an Agg canvas of its own; refused when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as e:
        raise MissingDependencyError(
            '--png needs matplotlib; install it with pip install "minigpt[plot]"'
        ) from e
    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # render with Agg, whatever backend the process uses
    return fig


def save(fig: Figure, path: PathLike) -> Path:
    """Write `fig` as a PNG at `path` (atomically: never half a file); returns the path."""
    path = check_png(path)
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "Glyph ... missing from font": drawn as a box
        fig.savefig(buf, format="png", dpi=110)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, buf.getvalue())
    return path


def plain(label: str) -> str:
    """A token label as matplotlib draws it literally: "$" would start mathematics."""
    return label.replace("$", r"\$")


def weights_png(report: WeightReport, path: PathLike) -> Path:
    """Horizontal bars: the parameter count of each category (the tied unembedding: 0)."""
    rows = [row for row in report.categories if row.stats.count or row.category == "unembedding"]
    fig = figure(8, 0.45 * len(rows) + 1.5)
    ax = fig.subplots()
    names = [row.category for row in rows][::-1]
    counts = [row.stats.count for row in rows][::-1]
    bars = ax.barh(names, counts, color="C0")
    ax.bar_label(bars, [f"{c:,} ({c / max(report.total, 1):.1%})" for c in counts], padding=3,
                 fontsize="small")  # fmt: skip
    ax.set_xlabel("parameters")
    ax.set_xlim(0, max(counts, default=1) * 1.3 or 1)
    tied = " (unembedding tied to the embedding)" if report.tied else ""
    ax.set_title(f"{report.total:,} parameters by role{tied}")
    return save(fig, path)


def attention_png(labels: Sequence[str], attention: Sequence[Tensor], path: PathLike) -> Path:
    """One heatmap per head (query rows, key columns), layers down and heads across;
    `attention` holds each layer's (heads, T, T) weights."""
    n_layer, n_head = len(attention), len(attention[0])
    fig = figure(2.2 * n_head + 1, 2.2 * n_layer + 0.8)
    axes = fig.subplots(n_layer, n_head, squeeze=False)
    for layer, heads in enumerate(attention):
        for head, weights in enumerate(heads):
            ax = axes[layer][head]
            image = ax.imshow(weights.cpu(), cmap=HEATMAP, vmin=0, vmax=1)
            ax.set_title(f"layer {layer} head {head}", fontsize="small")
            token_ticks(ax, labels, rows=head == 0, columns=layer == n_layer - 1)
    fig.colorbar(image, ax=axes, shrink=0.6, label="attention weight")
    fig.suptitle("attention: query rows, key columns (layers and heads from 0)")
    return save(fig, path)


def token_ticks(ax: Axes, labels: Sequence[str], rows: bool, columns: bool) -> None:
    """Token labels along the axes a few tokens long; positions along longer ones."""
    if len(labels) > MAX_TICK_LABELS:
        return  # matplotlib's own position ticks
    ticks = list(range(len(labels)))
    shown = [f"'{plain(label)}'" for label in labels]  # quoted: a space shows
    ax.set_xticks(ticks, shown if columns else [], rotation=90, fontsize="x-small")
    ax.set_yticks(ticks, shown if rows else [], fontsize="x-small")


def positions_png(table: Tensor, similarity: Tensor, title: str, path: PathLike) -> Path:
    """The position table (positions x channels) and the cosine similarity of every pair
    of positions, side by side."""
    fig = figure(12, 5.5)
    ax_table, ax_similarity = fig.subplots(1, 2)
    table, similarity = table.cpu(), similarity.cpu()
    limit = float(table.abs().max()) or 1.0
    image = ax_table.imshow(table, cmap=SIGNED, vmin=-limit, vmax=limit, aspect="auto",
                            interpolation="nearest")  # fmt: skip
    ax_table.set_xlabel("channel")
    ax_table.set_ylabel("position")
    ax_table.set_title("what is added at each position")
    fig.colorbar(image, ax=ax_table, shrink=0.8)
    image = ax_similarity.imshow(similarity, cmap=SIGNED, vmin=-1, vmax=1, interpolation="nearest")
    ax_similarity.set_xlabel("position")
    ax_similarity.set_ylabel("position")
    ax_similarity.set_title("cosine similarity of two positions' vectors")
    fig.colorbar(image, ax=ax_similarity, shrink=0.8)
    fig.suptitle(title)
    return save(fig, path)


def rope_png(view: RopeView, path: PathLike) -> Path:
    """RoPE's score of a query and key of ones against their distance, and each channel
    pair's wavelength."""
    fig = figure(11, 4.5)
    ax_score, ax_wave = fig.subplots(1, 2)
    ax_score.plot(view.distances, view.scores, lw=1.2)
    ax_score.axhline(0, lw=0.8, color="0.5")
    ax_score.set_xlabel("distance between query and key (positions)")
    ax_score.set_ylabel("score / head size")
    ax_score.set_title("score of a query and key of ones, rotated")
    ax_wave.semilogy(range(len(view.wavelengths)), view.wavelengths, "o-", ms=3)
    ax_wave.set_xlabel("channel pair")
    ax_wave.set_ylabel("wavelength (positions per turn)")
    ax_wave.set_title("each pair's rotation")
    for ax in (ax_score, ax_wave):
        ax.grid(alpha=0.3)
    fig.suptitle("RoPE rotates queries and keys; nothing is added to the embeddings")
    return save(fig, path)


def embeddings_png(projection: Projection, path: PathLike) -> Path:
    """The tokens as labelled points on the embeddings' two main directions."""
    fig = figure(10, 9)
    ax = fig.subplots()
    xs = [x for x, _ in projection.points]
    ys = [y for _, y in projection.points]
    ax.scatter(xs, ys, s=6, color="0.6")
    for x, y, label in zip(xs, ys, projection.labels, strict=True):
        ax.annotate(plain(label), (x, y), fontsize="x-small", xytext=(2, 2),
                    textcoords="offset points")  # fmt: skip
    first, second = projection.explained
    ax.set_xlabel(f"first direction ({first:.1%} of the variance)")
    ax.set_ylabel(f"second direction ({second:.1%} of the variance)")
    ax.set_title(f"the first {len(projection.ids)} tokens' embeddings, by PCA")
    ax.grid(alpha=0.3)
    return save(fig, path)
