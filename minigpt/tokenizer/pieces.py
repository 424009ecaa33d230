r"""How tokens read: each token's bytes as text a person can see.

A byte-level tokenizer (GPT-2, minigpt's BPE) may split one character across tokens:
Korean and emoji often take two or three. Decoding such a token alone gives U+FFFD,
which hides what the token is. Here a token reads as `Part`s:

- `text`: whole characters the token holds;
- `bytes`: bytes of a character split across tokens (or bytes that are not UTF-8 at
  all), written `<EC><96>`;
- `completes`: the character that the token's bytes complete, together with the bytes
  of the tokens before it; it follows those bytes.

So "얘" split as [EC 96][B4] reads `<EC><96>` then `<B4>` completing "얘". Valid text
never shows U+FFFD. `readable` writes control characters (newline, tab, ESC, ...) as
escapes (`\n`), so a token's whitespace and controls can be seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal

from minigpt.tokenizer.encodings import Tokenizer

PartKind = Literal["text", "bytes", "completes"]


@dataclass(frozen=True)
class Part:
    """A run of one token's reading: characters, bytes, or a character completed."""

    kind: PartKind
    text: str  # the characters (raw: see `readable`), or the bytes as "<EC><96>"


@dataclass(frozen=True)
class Piece:
    """How one token reads, in the context of the tokens around it."""

    id: int
    parts: tuple[Part, ...]

    @property
    def text(self) -> str:
        """The reading as one string (a completed character after a "→")."""
        return "".join("→" + p.text if p.kind == "completes" else p.text for p in self.parts)


def token_pieces(tokenizer: Tokenizer, ids: Sequence[int]) -> list[Piece]:
    """How each of `ids` reads, in order (a character split across them is seen whole)."""
    chunks = [tokenizer.token_bytes(i) for i in ids]
    return [Piece(i, parts) for i, parts in zip(ids, read_chunks(chunks), strict=True)]


def read_chunks(chunks: Sequence[bytes]) -> list[tuple[Part, ...]]:
    """The parts each chunk of a byte string reads as (see the module doc)."""
    data = b"".join(chunks)
    parts: list[list[Part]] = [[] for _ in chunks]
    owner = [i for i, chunk in enumerate(chunks) for _ in chunk]  # byte -> its chunk
    for start, end, char in characters(data):
        first, last = owner[start], owner[end - 1]
        if first == last and char is not None:
            _add(parts[first], "text", char)
            continue
        for position in range(start, end):
            _add(parts[owner[position]], "bytes", f"<{data[position]:02X}>")
        if char is not None:
            _add(parts[last], "completes", char)
    return [tuple(p) for p in parts]


def characters(data: bytes) -> Iterator[tuple[int, int, str | None]]:
    """Each character of `data` as (start, end, character); a byte that begins no
    valid UTF-8 character is one (start, start + 1, None)."""
    position = 0
    while position < len(data):
        for length in range(1, 5):  # the first length that decodes is one character
            try:
                char = data[position : position + length].decode("utf-8")
            except UnicodeDecodeError:
                continue
            yield position, position + length, char
            position += length
            break
        else:
            yield position, position + 1, None
            position += 1


def _add(parts: list[Part], kind: PartKind, text: str) -> None:
    """Append to the last part when it is of the same kind (not two completions)."""
    if parts and parts[-1].kind == kind and kind != "completes":
        parts[-1] = Part(kind, parts[-1].text + text)
    else:
        parts.append(Part(kind, text))


def readable(text: str) -> str:
    r"""`text` with every character that prints as nothing (newline, tab, ESC, a
    zero-width joiner) written as its escape: `\n`, `\t`, `\x1b`, `\u200d`."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)
