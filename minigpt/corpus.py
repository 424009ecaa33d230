"""Reading a text corpus of any size in chunks: decode, check, split, cut for encoding.

A corpus is read twice, never whole: a first pass decodes it (strictly, in the given
encoding, a UTF-8 byte-order mark dropped) to check it is text, count its characters,
hash its bytes and collect what the tokenizer is built from; a second pass yields the
train and validation text in segments the tokenizer encodes one at a time. Memory
stays bounded by the chunk size whatever the file's size, so a 2 GB corpus tokenizes
in well under 1 GB (benchmarks/tokenize_memory.py).

Segments end at a line break between two non-space characters ("...x\\ny...", or
inside "x\\r\\ny"): GPT-2's pre-tokenization pattern (minigpt's BPE, gpt2, r50k_base)
always splits there, so encoding segment by segment gives the same ids as encoding the
whole text. A text with no such line break in SEGMENT_CHARS x 4 characters is cut
where it must be (ids may then differ from whole-text encoding at that one point).
"""

from __future__ import annotations

import codecs
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from minigpt.errors import DataError

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


class Corpus:
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
            with open(self.data, "rb") as f:
                while chunk := f.read(CHUNK_BYTES):
                    yield chunk
        except OSError as e:
            raise DataError(f"cannot read {self.data}: {e.strerror or e}") from e

    def texts(self, digest: hashlib._Hash | None = None) -> Iterator[str]:
        """The decoded text, chunk by chunk; a DataError names the first bad byte.
        `digest`, if given, is updated with the bytes as stored."""
        wide = self.codec.name.startswith(("utf-16", "utf-32"))  # their text holds NULs
        name = "utf-8-sig" if self.codec.name == "utf-8" else self.codec.name
        decoder = codecs.getincrementaldecoder(name)(errors="strict")
        offset = 0  # bytes of the file before this chunk
        empty = True
        for chunk in self.chunks():
            if offset == 0:
                self._check_start(chunk, wide)
            empty = empty and not chunk
            if digest is not None:
                digest.update(chunk)
            held = len(decoder.getstate()[0])  # bytes of a character split across chunks
            try:
                text = decoder.decode(chunk)
            except UnicodeDecodeError as e:
                raise self._decode_error(offset - held + e.start, e.object[e.start]) from e
            offset += len(chunk)
            if text:
                yield text
        if empty:
            raise DataError(f"{self.source} is empty; give a file with some text in it")
        try:
            tail = decoder.decode(b"", final=True)
        except UnicodeDecodeError as e:
            raise self._decode_error(offset - len(e.object) + e.start, e.object[e.start]) from e
        if tail:
            yield tail

    def scan(self, chars: bool = False, head: bool = False) -> Scan:
        """First pass: check the text, count characters, hash the bytes."""
        digest = hashlib.sha256()
        n_chars, seen, first, text_found = 0, set(), [], False
        for text in self.texts(digest):
            if head and n_chars < BPE_TRAIN_CHARS:
                first.append(text)
            n_chars += len(text)
            text_found = text_found or not text.isspace()
            if chars:
                seen.update(text)
        if not text_found:
            raise DataError(
                f"{self.source} contains only whitespace; give a file with some text in it"
            )
        return Scan(digest.hexdigest(), n_chars, seen, "".join(first)[:BPE_TRAIN_CHARS])

    def segments(self, n_train: int) -> Iterator[tuple[str, str]]:
        """Second pass: (split, text) pieces, train's first n_train characters then val."""
        split, done, buffer = "train", 0, ""
        for text in self.texts():
            while text:
                if split == "train" and done + len(text) >= n_train:
                    cut = n_train - done
                    buffer += text[:cut]
                    yield from _cut(buffer, split, final=True)
                    split, done, buffer, text = "val", n_train, "", text[cut:]
                    continue
                done += len(text)
                buffer += text
                text = ""
                if len(buffer) >= SEGMENT_CHARS:
                    pieces = list(_cut(buffer, split, final=False))
                    buffer = pieces.pop()[1] if pieces else buffer
                    yield from pieces
        yield from _cut(buffer, split, final=True)

    def _check_start(self, chunk: bytes, wide: bool) -> None:
        if not wide and chunk.startswith(UTF16_32_BOMS):
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

    def _decode_error(self, offset: int, byte: int) -> DataError:
        return DataError(
            f"{self.source} is not valid {self.encoding} (byte 0x{byte:02x} at offset "
            f"{max(offset, 0)}); if the file uses another encoding, pass e.g. "
            "--encoding latin-1 or cp1252"
        )


def _cut(buffer: str, split: str, final: bool) -> Iterator[tuple[str, str]]:
    """Pieces of buffer ending at safe boundaries; unless final, the last piece is the
    unfinished rest, to be continued (it is yielded last, for the caller to keep)."""
    while len(buffer) > SEGMENT_CHARS:
        cut = _safe_boundary(buffer, SEGMENT_CHARS)
        if cut is None:
            if len(buffer) < 4 * SEGMENT_CHARS and not final:
                break
            cut = SEGMENT_CHARS
        yield split, buffer[:cut]
        buffer = buffer[cut:]
    if buffer or not final:
        yield split, buffer


def _safe_boundary(text: str, limit: int) -> int | None:
    """The last index <= limit at a line break between two non-space characters: just
    after the "\n" of "x\ny", or between the "\r" and the "\n" of "x\r\ny" (GPT-2's
    pattern makes "\r" and "\n" separate pieces there, but "\r\n" one piece at a cut)."""
    i = text.rfind("\n", 0, limit)
    while i > 0:
        if i + 1 < len(text) and not text[i + 1].isspace():
            if not text[i - 1].isspace():
                return i + 1
            if text[i - 1] == "\r" and i >= 2 and not text[i - 2].isspace():
                return i
        i = text.rfind("\n", 0, i)
    return None


def _text_codec(encoding: str) -> codecs.CodecInfo:
    try:
        codec = codecs.lookup(encoding)
    except LookupError as e:
        raise DataError(f"unknown --encoding {encoding!r}; try utf-8, latin-1 or cp1252") from e
    if not getattr(codec, "_is_text_encoding", True):  # e.g. hex, base64, rot13
        raise DataError(f"--encoding {encoding!r} is not a text encoding; try utf-8 or latin-1")
    return codec
