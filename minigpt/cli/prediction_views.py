"""What `minigpt inspect lens | next | surprise` show in a terminal: the model's
predictions (each layer's, the next token's at several temperatures, its loss on each
token of a text) as rich renderables; the shared pieces are `inspect_views`'."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import RenderableType
from rich.text import Text

from minigpt.cli.inspect_views import note, quote, table, titled
from minigpt.cli.options import probability_legend, probability_style
from minigpt.inspect.lens import LensRow
from minigpt.inspect.nextdist import NextView
from minigpt.inspect.surprise import Surprise
from minigpt.tokenizer.encodings import Tokenizer
from minigpt.tokenizer.pieces import token_pieces

# ---- logit lens -------------------------------------------------------------------------


LENS_CELL = 8  # the width of a logit-lens cell
LENS_NAME = 11  # ... and of its row names


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
