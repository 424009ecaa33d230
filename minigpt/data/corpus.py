"""Reading a text corpus of any size in chunks: decode, check, split, cut for encoding.

A corpus is read twice, never whole: a first pass decodes it (strictly, in the given
encoding, a UTF-8 byte-order mark dropped) to check it is text, count its characters,
hash its bytes and collect what the tokenizer is built from; a second pass yields the
train and validation text in segments the tokenizer encodes one at a time. Memory
stays bounded by the chunk size whatever the file's size, so a 2 GB corpus tokenizes
in well under 1 GB (benchmarks/tokenize_memory.py).

Segments end where the tokenizer's pre-tokenization always splits (see _BOUNDARY):
after the "\\n" of "x\\ny" for any byte-level BPE, and before any "\\n" that a
non-space follows for GPT-2's pattern (minigpt's BPE, gpt2, r50k_base), so encoding
segment by segment gives the same ids as encoding the whole text. The last boundary
before SEGMENT_CHARS is taken, else the first after it; only a text with no boundary
at all in 4 x SEGMENT_CHARS characters is cut where it must be (ids may then differ
from whole-text encoding at that one point). The bytes of the second pass must hash
as the first pass's did, so a file changed while being read is refused.
"""

from __future__ import annotations

import codecs
import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from minigpt.errors import DataError
from minigpt.fileio import open_regular

CHUNK_BYTES = 8 << 20  # read this much at a time
SEGMENT_CHARS = 4 << 20  # encode about this much at a time
BPE_TRAIN_CHARS = 16 << 20  # BPE merges are learned from at most this much training text
NUL_WINDOW = 1 << 16  # a NUL byte this early means binary, not text
UTF16_32_BOMS = (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE, codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)


@dataclass
class Scan:
    """What the first pass learns about a corpus."""

    sha256: str
    n_chars: int
    chars: set[str] = field(default_factory=set)  # every distinct character (if asked)
    head: str = ""  # the first BPE_TRAIN_CHARS characters (if asked)
    last: str = ""  # the last character
    has_text: bool = True  # some character is not whitespace
    documents: list[Scan] = field(default_factory=list)  # a directory's: each file's scan


class TextReader:
    """A text corpus: bytes in memory or a file on disk, decoded in `encoding`."""

    def __init__(self, data: bytes | Path, encoding: str, source: str) -> None:
        self.data = data
        self.source = source
        self.codec = _text_codec(encoding)
        self.encoding = encoding

    def chunks(self) -> Iterator[bytes]:
        if isinstance(self.data, bytes):
            for start in range(0, len(self.data), CHUNK_BYTES):
                yield self.data[start : start + CHUNK_BYTES]
            return
        try:
            with open_regular(self.data) as f:  # a pipe would never end
                while chunk := f.read(CHUNK_BYTES):
                    yield chunk
        except OSError as e:
            raise DataError(f"cannot read {self.data}: {e.strerror or e}") from e

    def texts(self, digest: hashlib._Hash | None = None) -> Iterator[str]:
        """The decoded text, chunk by chunk; a DataError names the first bad byte.
        `digest`, if given, is updated with the bytes as stored."""
        wide = self.codec.name.startswith(("utf-16", "utf-32"))  # their text holds NULs
        decoder = self.codec.incrementaldecoder(errors="strict")
        offset = 0  # bytes of the file before this chunk
        for chunk in self.chunks():
            if digest is not None:
                digest.update(chunk)
            start = 0
            if offset == 0:
                self._check_start(chunk, wide)
                if self.codec.name == "utf-8" and chunk.startswith(codecs.BOM_UTF8):
                    start = len(codecs.BOM_UTF8)  # a UTF-8 byte-order mark is not text
            held = len(decoder.getstate()[0])  # bytes of a character split across chunks
            try:
                text = decoder.decode(chunk[start:])
            except UnicodeError as e:
                raise self._decode_error(offset + start - held, e) from e
            offset += len(chunk)
            if text:
                yield self._checked(text)
        if offset == 0:
            raise DataError(f"{self.source} is empty; give a file with some text in it")
        try:
            tail = decoder.decode(b"", final=True)
        except UnicodeError as e:
            raise self._decode_error(offset - len(getattr(e, "object", b"")), e) from e
        if tail:
            yield self._checked(tail)

    def _checked(self, text: str) -> str:
        """Text that is valid Unicode: some codecs (unicode_escape, utf-7) can produce
        lone surrogates, which no tokenizer can store."""
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise DataError(
                f"{self.source} decodes to an unpaired surrogate (U+{ord(text[e.start]):04X}) "
                f"with --encoding {self.encoding}; that is not text: check the encoding"
            ) from e
        return text

    def scan(self, chars: bool = False, head: bool = False, require_text: bool = True) -> Scan:
        """First pass: check the text, count characters, hash the bytes. Text that is
        all whitespace is refused unless `require_text` is off (one file of many)."""
        digest = hashlib.sha256()
        n_chars, seen, first, text_found, last = 0, set(), [], False, ""
        for text in self.texts(digest):
            if head and n_chars < BPE_TRAIN_CHARS:
                first.append(text)
            n_chars += len(text)
            text_found = text_found or not text.isspace()
            last = text[-1]
            if chars:
                seen.update(text)
        if require_text and not text_found:
            raise DataError(
                f"{self.source} contains only whitespace; give a file with some text in it"
            )
        head_text = "".join(first)[:BPE_TRAIN_CHARS]
        return Scan(digest.hexdigest(), n_chars, seen, head_text, last, text_found)

    def segments(
        self, scan: Scan, n_train: int, gpt2_cuts: bool = False
    ) -> Iterator[tuple[str, str]]:
        """Second pass: (split, text) pieces, train's first n_train characters then val.

        `gpt2_cuts` allows the extra cut points GPT-2's pattern permits (see _BOUNDARY).
        The bytes must hash as they did in `scan` (else the file changed while read)."""
        rule = _BOUNDARY["gpt2" if gpt2_cuts else "any"]
        digest = hashlib.sha256()
        split, done, buffer = "train", 0, ""
        for text in self.texts(digest):
            while text:
                if split == "train" and done + len(text) >= n_train:
                    cut = n_train - done
                    yield from _cut(buffer + text[:cut], split, rule, final=True)
                    split, done, buffer, text = "val", n_train, "", text[cut:]
                    continue
                done += len(text)
                buffer += text
                text = ""
                if len(buffer) >= SEGMENT_CHARS:
                    pieces = list(_cut(buffer, split, rule, final=False))
                    buffer = pieces.pop()[1]
                    yield from pieces
        yield from _cut(buffer, split, rule, final=True)
        if digest.hexdigest() != scan.sha256:
            raise DataError(f"{self.source} changed while it was being read; try again")

    def _check_start(self, chunk: bytes, wide: bool) -> None:
        if self.codec.name == "utf-8" and chunk.startswith(UTF16_32_BOMS):
            raise DataError(
                f"{self.source} starts with a UTF-16/UTF-32 byte-order mark; "
                "pass --encoding utf-16 (or utf-32)"
            )
        nul = chunk.find(b"\x00", 0, NUL_WINDOW)
        if nul >= 0 and not wide:
            raise DataError(
                f"{self.source} looks like a binary file (NUL byte at offset {nul}); "
                "give a text file"
            )

    def _decode_error(self, base: int, error: UnicodeError) -> DataError:
        """The error for a byte the codec refused, at its offset in the file."""
        if not isinstance(error, UnicodeDecodeError):  # e.g. UTF-16 without a BOM
            return DataError(
                f"{self.source} cannot be read as {self.encoding}: {error}; for UTF-16 or "
                "UTF-32 without a byte-order mark pass e.g. --encoding utf-16-le"
            )
        return DataError(
            f"{self.source} is not valid {self.encoding} (byte 0x{error.object[error.start]:02x} "
            f"at offset {max(base + error.start, 0)}); if the file uses another encoding, "
            "pass e.g. --encoding latin-1 or cp1252"
        )


# Where a segment may end without changing how the text tokenizes. Any byte-level
# pre-tokenizer (GPT-2's, cl100k's) splits right after the "\n" of "x\ny" (x, y not
# spaces). GPT-2's pattern (minigpt's BPE, gpt2, r50k_base) also splits before every
# "\n" followed by a non-space, so "x\r\ny" and "x\n\ny" can be cut too.
_BOUNDARY = {
    "any": re.compile(r"(?<=\S\n)(?=\S)"),
    "gpt2": re.compile(r"(?=\n\S)"),
}
LOOK_BACK = 1 << 16  # search this far back from the segment end first


def _cut(buffer: str, split: str, rule: re.Pattern[str], final: bool) -> Iterator[tuple[str, str]]:
    """Pieces of buffer of about SEGMENT_CHARS ending at boundaries; unless final, the
    last piece is the unfinished rest (yielded last, for the caller to keep)."""
    while len(buffer) > SEGMENT_CHARS:
        cut = _boundary(buffer, rule)
        if cut is None:
            if len(buffer) <= 4 * SEGMENT_CHARS:
                break  # wait for more text (or, if final, take it whole)
            cut = SEGMENT_CHARS  # no boundary in 4 segments: cut where we must
        yield split, buffer[:cut]
        buffer = buffer[cut:]
    if buffer or not final:
        yield split, buffer


def _boundary(text: str, rule: re.Pattern[str]) -> int | None:
    """The last boundary at or before SEGMENT_CHARS, else the first one after it
    (within 4 x SEGMENT_CHARS); None if there is none."""
    for start in (SEGMENT_CHARS - LOOK_BACK, 1):
        last = None
        for match in rule.finditer(text, max(start, 1), SEGMENT_CHARS + 1):
            last = match.start()
        if last is not None:
            return last
    match = rule.search(text, SEGMENT_CHARS, 4 * SEGMENT_CHARS)
    return match.start() if match else None


def _text_codec(encoding: str) -> codecs.CodecInfo:
    try:
        codec = codecs.lookup(encoding)
    except LookupError as e:
        raise DataError(f"unknown --encoding {encoding!r}; try utf-8, latin-1 or cp1252") from e
    if not getattr(codec, "_is_text_encoding", True):  # e.g. hex, base64, rot13
        raise DataError(f"--encoding {encoding!r} is not a text encoding; try utf-8 or latin-1")
    return codec
