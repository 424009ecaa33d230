r"""`minigpt sample --show-probs`: each generated token, its probabilities, the alternatives.

Each row shows a token as it reads (`minigpt.tokenizer.pieces`: `'\n'` for a newline,
`'<EC><96>'` for part of a character), two probabilities and the model's likeliest
alternatives:

- p model: what the model gave the token (temperature 1, no filters);
- p drawn: what the sampler drew it with, after penalties, temperature and the
  top-k/top-p/min-p filters (1 for greedy; 0.000 never hides a small one: 3e-05).

The alternatives wrap between "token p" pairs, never inside one.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from rich.console import Console, ConsoleOptions, RenderResult
from rich.measure import Measurement
from rich.table import Table
from rich.text import Text

from minigpt.cli.options import probability_style
from minigpt.cli.tokens import reading
from minigpt.generation.generate import Completion
from minigpt.tokenizer.encodings import Tokenizer
from minigpt.tokenizer.pieces import Piece, token_pieces

TOP_ALTERNATIVES = 5
CAPTION = (
    "p model: the model's probability (temperature 1, no filters); p drawn: the "
    "sampler's, after penalties, temperature and top-k/top-p/min-p"
)


def probs_table(tok: Tokenizer, c: Completion, title: str | None) -> Table:
    """One row per generated token: the token, p model, p drawn, the alternatives."""
    table = Table(title=title, show_edge=False, caption=CAPTION, caption_justify="left")
    table.add_column("#", justify="right", style="dim")
    table.add_column("token")
    table.add_column("p model", justify="right")
    table.add_column("p drawn", justify="right")
    table.add_column(f"top {TOP_ALTERNATIVES} the model considered", style="dim")
    drawn = c.sampled_logprobs or [math.nan] * len(c.ids)
    rows = zip(token_pieces(tok, c.ids), c.logprobs, drawn, strict=True)
    for i, (piece, lp, drawn_lp) in enumerate(rows):
        alts = [pair(token_pieces(tok, [a])[0], math.exp(alp)) for a, alp in c.top[i]]
        table.add_row(
            Text(str(i + 1)), quoted(piece), probability(math.exp(lp)),
            probability(math.exp(drawn_lp)), Flow(alts),
        )  # fmt: skip
    return table


def quoted(piece: Piece) -> Text:
    """A token as it reads (`minigpt.cli.tokens.reading`), between quotes."""
    mark = '"' if "'" in piece.text and '"' not in piece.text else "'"
    return Text(mark).append_text(reading(piece)).append(mark)


def pair(piece: Piece, p: float) -> Text:
    """One alternative: the token and its probability."""
    return quoted(piece).append(f" {p:.2f}")


def probability(p: float) -> Text:
    """p to 3 decimals, a small one as 3e-05 (never a misleading 0.000), coloured."""
    if math.isnan(p):
        return Text("-")
    shown = f"{p:.3f}" if p >= 0.001 or p == 0.0 else f"{p:.0e}"
    return Text(shown, style=probability_style(p))


class Flow:
    """Items side by side, `gap` cells apart, wrapped between items only."""

    def __init__(self, items: Sequence[Text], gap: int = 2) -> None:
        self.items = list(items)
        self.gap = gap

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        widths = [item.cell_len for item in self.items]
        widest = max(widths, default=0)
        return Measurement(widest, sum(widths) + self.gap * max(len(widths) - 1, 0))

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        line = Text()
        for item in self.items:
            if line and line.cell_len + self.gap + item.cell_len > options.max_width:
                yield line
                line = Text()
            if line:
                line.append(" " * self.gap)
            line.append_text(item)
        yield line
