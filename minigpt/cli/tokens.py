r"""How tokens show on screen: `minigpt tokenize --text`'s view, and one token's reading.

Each token reads as `minigpt.tokenizer.pieces` says: controls as escapes (`\n`), the
bytes of a character split across tokens as `<EC><96>`, the character they complete
dim after the last of them (`→얘`). Token boundaries must be visible in any terminal:

- in colour, tokens take turns through background colours that are entries of the
  256-colour palette, each downgrading to a different one of the 16 basic colours, so
  neighbours differ in a 16-colour, a 256-colour and a truecolor terminal alike;
- without colour (`--no-color`, NO_COLOR, a pipe or a file, TERM=dumb), a `|` stands
  between tokens and at both ends.

A token holding a newline is followed by a line break, so the text keeps its lines.
"""

from __future__ import annotations

from rich.console import Console
from rich.text import Text

from minigpt.tokenizer.encodings import Tokenizer
from minigpt.tokenizer.pieces import Piece, readable, token_pieces

# Dark backgrounds from the 256-colour palette (exact entries, never approximated),
# under white text; in 16 colours they become blue, magenta, cyan, green and yellow.
TOKEN_COLOURS = tuple(f"color(231) on color({n})" for n in (18, 53, 30, 22, 94))
SEPARATOR = "|"


def wants_colour(console: Console, no_color: bool) -> bool:
    """Whether `console` shows colour: not asked off (--no-color, NO_COLOR) and able."""
    return not no_color and not console.no_color and console.color_system is not None


def render_tokens(tok: Tokenizer, text: str, colour: bool) -> Text:
    """`text` token by token (backgrounds taking turns, or `|` between), then the ids."""
    ids = tok.encode(text)
    shown = Text()
    for i, piece in enumerate(token_pieces(tok, ids)):
        if colour:
            shown.append_text(reading(piece, TOKEN_COLOURS[i % len(TOKEN_COLOURS)]))
        else:
            shown.append(SEPARATOR).append_text(reading(piece))
        ends_line = any(p.kind != "bytes" and "\n" in p.text for p in piece.parts)
        if not colour and (ends_line or i == len(ids) - 1):
            shown.append(SEPARATOR)
        if ends_line:
            shown.append("\n")
    shown.append("\n" if shown.plain.endswith("\n") else "\n\n")
    shown.append(f"{len(ids)} tokens, {len(text.encode())} bytes: {ids}")
    return shown


def reading(piece: Piece, style: str = "") -> Text:
    """One token as it reads, in `style`: text and bytes as they are, a completed
    character dim after its bytes. Text, not markup: tokens may hold "[/...]"."""
    shown = Text(style=style)
    for part in piece.parts:
        if part.kind == "completes":
            shown.append("→" + readable(part.text), style="dim")
        else:
            shown.append(readable(part.text))
    return shown
