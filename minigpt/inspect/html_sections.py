"""The sections of the inspect report page (weights, positions, embeddings, logit lens,
next token, surprise) as escaped markup, and the small markup pieces they and the
pages share (tables, legends, colour ramps). Every text from a model is escaped here."""

from __future__ import annotations

import math
from html import escape
from typing import Any

import torch

from minigpt.errors import ConfigError
from minigpt.inspect.embeddings import projection, ranked, vocabulary
from minigpt.inspect.forward import Traced
from minigpt.inspect.lens import LensRow
from minigpt.inspect.nextdist import NextView
from minigpt.inspect.positions import (
    RopeView,
    Shift,
    cosine_matrix,
    position_shifts,
    position_table,
    rope_view,
)
from minigpt.inspect.surprise import Surprise, surprise
from minigpt.inspect.weights import WeightReport
from minigpt.model import GPT
from minigpt.tokenizer.encodings import Tokenizer

HEATMAP_LIMIT = 128  # positions and channels drawn of a position table
PROJECTED = 200  # vocabulary tokens on the embedding map
NEIGHBOURS = 5  # nearest tokens shown for each distinct prompt token
NEIGHBOUR_ROWS = 8  # distinct prompt tokens with a nearest-token row


def shown(label: str) -> str:
    """A label made only of spaces, with its spaces visible (U+2423), escaped."""
    return escape(label.replace(" ", "\u2423") if not label.strip() else label)


def grid(head: list[str], rows: list[list[str]], left: int = 1) -> str:
    """A table of already-escaped cells; the first `left` columns align left."""

    def cells(tag: str, values: list[str]) -> str:
        return "".join(
            f"<{tag}{' class=l' if i < left else ''}>{v}</{tag}>" for i, v in enumerate(values)
        )

    body = "".join(f"<tr>{cells('td', row)}</tr>" for row in rows)
    return f'<table class="grid"><tr>{cells("th", head)}</tr>{body}</table>'


def legend(kind: str, lo: str, hi: str) -> str:
    return f'<span class="legend">{lo}<span class="ramp {kind}"></span>{hi}</span>'


BLUES = ((255, 255, 255), (107, 174, 214), (8, 48, 107))  # the script's BLUES
ORANGES = ((255, 255, 255), (253, 174, 107), (166, 54, 3))


def ramp(stops: tuple[tuple[int, int, int], ...], w: float) -> str:
    """The colour at w in [0, 1] along three stops, as CSS."""
    x = min(max(w, 0.0), 1.0) * 2
    i = min(int(x), 1)
    f = x - i
    rgb = (round(a + (b - a) * f) for a, b in zip(stops[i], stops[i + 1], strict=True))
    return "rgb({},{},{})".format(*rgb)


def prob(p: float, decimals: int) -> str:
    """A probability to `decimals` places, or in scientific notation when that would
    read 0 (a vocabulary of 50,000 tokens spreads thin)."""
    return f"{p:.{decimals}f}" if p == 0 or p >= 10**-decimals else f"{p:.1e}"


def ink(w: float) -> str:
    """Text colour readable on `_blue(w)` or `ramp(ORANGES, w)`."""
    return "color:#fff;" if w > 0.6 else ""


def weights_section(report: WeightReport) -> str:
    rows = []
    for r in report.categories:
        tied = r.category == "unembedding" and report.tied
        rows.append(
            [
                escape(r.category),
                f"{r.stats.count:,}" if not tied else "tied: counted as the embedding",
                f"{100 * r.share:.1f}%",
                *(
                    ["", "", ""]
                    if r.stats.count == 0
                    else [f"{r.stats.rms:.4f}", f"{r.stats.min:.4f}", f"{r.stats.max:.4f}"]
                ),
            ]
        )
    rows.append(["total", f"{report.total:,}", "100.0%", "", "", ""])
    overall = grid(["category", "parameters", "share", "rms", "min", "max"], rows)
    per_category = []
    categories = [r.category for r in report.categories]
    for category in categories:
        layer_rows = [r for r in report.layers if r.category == category]
        if not layer_rows:
            continue
        table = grid(
            ["layer", "parameters", "rms", "min", "max"],
            [
                [
                    str(r.layer),
                    f"{r.stats.count:,}",
                    f"{r.stats.rms:.4f}",
                    f"{r.stats.min:.4f}",
                    f"{r.stats.max:.4f}",
                ]
                for r in layer_rows
            ],
        )
        per_category.append(f"<div><h3>{escape(category)}</h3>{table}</div>")
    return (
        '<p class="note">The parameters by role; the query, key and value parts of the '
        "fused attention matrix count apart. With tied embeddings one matrix embeds and "
        "unembeds, counted once.</p>\n"
        f"{overall}\n<h3>Per layer</h3>\n"
        f'<div class="cards">{"".join(per_category)}</div>'
    )


def positions_section(
    model: GPT, tokenizer: Tokenizer, prompt: str, heatmaps: dict[str, Any]
) -> str:
    kind = model.config.pos_encoding
    intro = {
        "learned": "A learned table: one trained vector per position, added to each "
        "token's embedding.",
        "sinusoidal": "Fixed sines and cosines of geometric wavelengths, added to each "
        "token's (scaled) embedding.",
        "rope": "Rotary positions: nothing is added to the embedding; each query and key "
        "is rotated by an angle proportional to its position, so a score depends on the "
        "distance between query and key.",
    }.get(kind, "")
    parts = [f'<p class="note">{escape(kind)}: {intro}</p>']
    table = position_table(model)
    if table is not None:
        shown = table[:HEATMAP_LIMIT, :HEATMAP_LIMIT]
        hi = float(shown.abs().max()) or 1.0
        heatmaps["positions"] = heatmap(shown, "position", "channel", diverging=True, hi=hi)
        sim = cosine_matrix(table[:HEATMAP_LIMIT])
        heatmaps["similarity"] = heatmap(sim, "position", "position", diverging=True, hi=1.0)
        n_pos, n_ch = table.shape
        parts.append(
            '<div class="cards">'
            f'<figure class="chart"><canvas class="heat" data-key="positions"></canvas>'
            f"<figcaption>The table: positions 0..{shown.size(0) - 1} of {n_pos} (rows) by "
            f"channels 0..{shown.size(1) - 1} of {n_ch} (columns). "
            f"{legend('diverging', f'{-hi:.2f}', f'{hi:.2f}')}</figcaption></figure>"
            f'<figure class="chart"><canvas class="heat" data-key="similarity"></canvas>'
            "<figcaption>Cosine similarity of every pair of positions: near positions "
            f"are alike when the band around the diagonal is red. {legend('diverging', '-1', '1')}"
            "</figcaption></figure></div>"
        )
    rope = rope_view(model)
    if rope is not None:
        parts.append(rope_markup(rope))
    shifts = position_shifts(model, tokenizer, prompt)
    parts.append(
        "<h3>Does adding the position make a token look like another token?</h3>"
        + (
            '<p class="note">RoPE adds nothing to the embedding, so a token enters the first '
            "layer as itself.</p>"
            if shifts is None
            else shift_table(shifts)
        )
    )
    return "\n".join(parts)


def heatmap(
    values: torch.Tensor, rows: str, cols: str, diverging: bool, hi: float, lo: float = 0.0
) -> dict[str, Any]:
    """A matrix for the script's canvas heatmaps, rounded to 4 decimals."""
    return {
        "values": [[round(v, 4) for v in row] for row in values.tolist()],
        "rows": rows,
        "cols": cols,
        "diverging": diverging,
        "lo": lo,
        "hi": hi,
    }


def rope_markup(rope: RopeView) -> str:
    rows = [
        [str(i), f"{f:.4g}", f"{w:.4g}"]
        for i, (f, w) in enumerate(zip(rope.frequencies, rope.wavelengths, strict=True))
    ]
    frequencies = grid(["pair", "radians per position", "wavelength (positions)"], rows)
    chart = line_chart(rope.distances, rope.scores, "distance", "score")
    return (
        '<div class="cards">'
        f"<div><h3>Each channel pair's frequency</h3>{frequencies}</div>"
        "<div><h3>Score against distance</h3>"
        f'<figure class="chart">{chart}<figcaption>A query and a key of all ones, rotated '
        "by the model's own tables: their score (divided by the head size) falls and "
        "oscillates as they move apart.</figcaption></figure></div></div>"
    )


def line_chart(xs: list[int], ys: list[float], x_name: str, y_name: str) -> str:
    width, height, pad = 460, 240, 36
    x_hi = max(xs[-1], 1)
    y_lo, y_hi = min(min(ys), 0.0), max(max(ys), 1.0)

    def px(x: float) -> float:
        return pad + (width - 2 * pad) * x / x_hi

    def py(y: float) -> float:
        return height - pad - (height - 2 * pad) * (y - y_lo) / (y_hi - y_lo or 1)

    points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys, strict=True))
    return (
        f'<svg class="plot" width="{width}" height="{height}" viewBox="0 0 {width} {height}">'
        f'<line class="axis" x1="{pad}" y1="{height - pad}" x2="{width - pad}" '
        f'y2="{height - pad}"/><line class="axis" x1="{pad}" y1="{pad}" x2="{pad}" '
        f'y2="{height - pad}"/><line class="zero" x1="{pad}" y1="{py(0):.1f}" '
        f'x2="{width - pad}" y2="{py(0):.1f}"/><polyline points="{points}"/>'
        f'<text x="{pad}" y="{height - pad + 14}" text-anchor="middle">0</text>'
        f'<text x="{width - pad}" y="{height - pad + 14}" text-anchor="middle">{x_hi}</text>'
        f'<text x="{width / 2}" y="{height - 6}" text-anchor="middle">{x_name}</text>'
        f'<text x="{pad - 4}" y="{py(y_hi) + 4:.1f}" text-anchor="end">{y_hi:.1f}</text>'
        f'<text x="{pad - 4}" y="{py(y_lo) + 4:.1f}" text-anchor="end">{y_lo:.1f}</text>'
        f'<text x="{pad}" y="{pad - 10}" text-anchor="middle">{y_name}</text></svg>'
    )


def shift_table(shifts: list[Shift]) -> str:
    rows = [
        [
            str(s.position),
            shown(s.label),
            shown(s.nearest_label),
            f"{s.cosine:.4f}",
            f"{s.own_cosine:.4f}",
            '<span class="yes">yes</span>' if s.changed else "no",
        ]
        for s in shifts
    ]
    return (
        '<p class="note">For each prompt token, the vocabulary embedding nearest (by '
        "cosine) to embedding + position, as the first layer receives it.</p>"
        + grid(
            ["position", "token", "nearest with the position", "cosine", "own cosine", "changed"],
            rows,
            left=3,
        )
    )


def embeddings_section(model: GPT, tokenizer: Tokenizer, traced: Traced) -> str:
    proj = projection(model, tokenizer, PROJECTED)
    in_prompt = set(traced.ids)
    width, height, pad = 720, 480, 24
    xs = [p[0] for p in proj.points]
    ys = [p[1] for p in proj.points]
    x_lo, x_hi = min(xs), max(xs)
    y_lo, y_hi = min(ys), max(ys)
    marks = []
    for i, label, (x, y) in zip(proj.ids, proj.labels, proj.points, strict=True):
        cx = pad + (width - 2 * pad) * (x - x_lo) / (x_hi - x_lo or 1)
        cy = height - pad - (height - 2 * pad) * (y - y_lo) / (y_hi - y_lo or 1)
        cls = " prompt" if i in in_prompt else ""
        marks.append(
            f'<g><title>{i}: {escape(label)}</title><circle class="dot{cls}" cx="{cx:.1f}" '
            f'cy="{cy:.1f}" r="2.5"/><text class="{cls.strip()}" x="{cx + 4:.1f}" '
            f'y="{cy + 3:.1f}">{shown(label)}</text></g>'
        )
    scatter = (
        f'<svg class="plot" id="pca" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}">{"".join(marks)}</svg>'
    )
    vectors = vocabulary(model, tokenizer)
    rows = []
    for i, label in list(dict(zip(traced.ids, traced.labels, strict=True)).items())[
        :NEIGHBOUR_ROWS
    ]:
        near = ranked(model, tokenizer, vectors[i], NEIGHBOURS, {i})
        rows.append(
            [shown(label)]
            + [f'<span class="t">{shown(n.label)}</span> {n.cosine:.2f}' for n in near]
        )
    width_n = max((len(r) for r in rows), default=1) - 1
    neighbours = grid(["token"] + [f"nearest {k + 1}" for k in range(width_n)], rows, width_n + 1)
    a, b = proj.explained
    return (
        f'<figure class="chart">{scatter}<figcaption>The first {len(proj.ids)} token ids '
        "on the two directions along which the vocabulary's embeddings vary most (PCA: "
        f"{100 * a:.1f}% and {100 * b:.1f}% of the variance). The prompt's tokens are "
        "in orange.</figcaption></figure>\n"
        f"<h3>Nearest tokens (cosine) to the prompt's tokens</h3>\n{neighbours}"
    )


def lens_section(rows: list[LensRow], traced: Traced) -> str:
    T = len(traced.ids)
    head = "<tr><th class=l>stage</th>" + "".join(
        f'<th><span class="sub">{t}</span><br><span class="t">{shown(label)}</span></th>'
        for t, label in enumerate(traced.labels)
    )
    body = []
    for row in rows:
        cells = []
        for t in range(T):
            p = row.probs[t][0]
            hit = " hit" if t + 1 < T and row.ids[t][0] == traced.ids[t + 1] else ""
            cells.append(
                f'<td class="p{hit}" style="background:{ramp(BLUES, p)};{ink(p)}" '
                f'title="{prob(p, 4)}"><span class="t">{shown(row.labels[t][0])}</span>'
                f"<br>{prob(p, 2)}</td>"
            )
        body.append(f"<tr><th class=l>{escape(row.name)}</th>{''.join(cells)}</tr>")
    table = f'<table class="grid lens">{head}</tr>{"".join(body)}</table>'
    return (
        '<p class="note">The final norm and the unembedding applied to the residual stream '
        "after the embedding and after every layer: what the model would predict next if "
        "it stopped there (likeliest token and its probability). Columns are the prompt's "
        "positions; outlined green where the prediction is the prompt's actual next "
        "token. The last row is the model's real prediction.</p>"
        f'<div class="scroll">{table}</div>'
    )


def next_section(view: NextView) -> str:
    columns = []
    widest = max(float(at.probs[i]) for at in view.temperatures for i in view.top_ids)
    for at in view.temperatures:
        rows = []
        for i, label in zip(view.top_ids, view.top_labels, strict=True):
            p = float(at.probs[i])
            rows.append(
                f'<tr><td class="l t">{shown(label)}</td><td class="bar-cell">'
                f'<div class="bar" style="width:{100 * p / widest:.1f}%"></div></td>'
                f"<td>{prob(p, 4)}</td></tr>"
            )
        table = (
            '<table class="grid"><tr><th class=l>token</th><th></th><th>probability</th></tr>'
            f"{''.join(rows)}</table>"
        )
        columns.append(
            f'<div class="dist"><h3>temperature {at.temperature:g}</h3>'
            f'<p class="sub">entropy {at.entropy_bits:.2f} bits, {at.kept} tokens kept</p>'
            f"{table}</div>"
        )
    return (
        '<p class="note">The next token after the prompt at three temperatures, as the '
        "sampler draws it (the UTF-8 mask applied, no other filter); the rows are the "
        "model's likeliest tokens at temperature 1; the bars share one scale.</p>"
        f'<div class="dists">{"".join(columns)}</div>'
    )


def surprise_section(model: GPT, tokenizer: Tokenizer, prompt: str) -> str:
    try:
        result: Surprise = surprise(model, tokenizer, prompt)
    except ConfigError as e:
        return f'<p class="note">{escape(str(e))}</p>'
    scored = [b for b in result.bits if b is not None]
    top = max(max(scored), 1e-9)
    uniform = math.log2(max(tokenizer.vocab_size, 2))
    spans = []
    for label, bits in zip(result.labels, result.bits, strict=True):
        if bits is None:
            spans.append(
                f'<span class="first" title="first token: not scored">{escape(label)}</span>'
            )
            continue
        w = bits / top
        spans.append(
            f'<span style="background:{ramp(ORANGES, w)};{ink(w)}" title="{bits:.2f} bits">'
            f"{escape(label)}</span>"
        )
    return (
        '<p class="note">Each token coloured by the model\'s loss on it, -log<sub>2</sub> '
        "p(token | the tokens before), in bits (hover for the number); the first token "
        f"has no context and is not scored. Guessing uniformly costs {uniform:.2f} bits "
        "a token.</p>"
        f"<p><strong>{result.bits_per_byte:.4f} bits per byte</strong> over "
        f"{result.scored_bytes} bytes; mean {sum(scored) / len(scored):.2f} bits a token. "
        f"{legend('heat', '0', f'{top:.1f} bits')}</p>"
        f'<div class="surprise">{"".join(spans)}</div>'
    )
