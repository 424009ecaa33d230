"""A directory of text files as one corpus: every `*.txt` file below it is a document.

Documents are taken in a stable order, sorted bytewise by their path relative to the
directory, and each one ends with a line break (one is added to a file that lacks
it), then with the tokenizer's end-of-text token where it has one (`bpe`, `gpt2`, ...;
a `char` vocabulary holds only the text's characters, so there the line break is the
only boundary). Each file is decoded exactly as a single text file is (`corpus`):
a byte that is not valid in the encoding is named with its file and offset.

Nothing outside the directory is read: links to directories are not followed (their
files inside it are read under their own path), and a `.txt` link whose file lies
outside it is refused, so a corpus from a stranger cannot make minigpt read your files.
Empty files add nothing and are left out, and so are hidden files and folders (`.git`,
`.venv`, ...).

The corpus's sha256 covers every document's relative path and content, so a change
anywhere (an edit, a rename, a file added or removed) is new text to the dataset cache
and to `--resume`; it never equals the sha256 of a single file.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import NamedTuple

from minigpt.data.corpus import BPE_TRAIN_CHARS, Scan, TextReader
from minigpt.errors import DataError
from minigpt.fileio import file_sha256

SUFFIX = ".txt"
MANIFEST_HEADER = b"minigpt text directory 1\n"  # versions the layout of the hashed manifest
END_OF_DOCUMENT = None  # the piece `segments` yields where a document ends


class Document(NamedTuple):
    """One text file of a directory corpus."""

    name: bytes  # its path relative to the directory, '/'-separated, as the OS spells it
    path: Path  # the file to read (a link's target inside the directory)


def display(name: bytes) -> str:
    """A document name as printable text (bytes that are not UTF-8 as escapes)."""
    return name.decode("utf-8", "backslashreplace")


def list_documents(root: Path) -> list[Document]:
    """The non-empty `*.txt` files below `root` (hidden ones aside), sorted bytewise by
    relative path."""
    real_root = root.resolve()
    found = []

    def stop(error: OSError) -> None:
        raise DataError(f"cannot read {error.filename}: {error.strerror or error}") from error

    for folder, folders, files in os.walk(root, onerror=stop):  # links to folders: not entered
        folders[:] = [f for f in folders if not f.startswith(".")]  # .git, .venv, ...
        for file in files:
            if file.endswith(SUFFIX) and not file.startswith("."):
                found.append(_document(root, real_root, Path(folder) / file))
    documents = sorted((d for d in found if d is not None), key=lambda d: d.name)
    if not documents:
        raise DataError(
            f"{root} holds no {SUFFIX} file with text in it (all folders below it were "
            f"searched); give a directory of {SUFFIX} files, or a text file"
        )
    return documents


def _document(root: Path, real_root: Path, path: Path) -> Document | None:
    """The document at `path`, None when it is empty; a DataError for a link leaving
    the directory or for something that is not a regular file."""
    name = os.fsencode(path.relative_to(root).as_posix())
    shown = str(root / display(name))
    target = path.resolve() if path.is_symlink() else path
    if path.is_symlink() and not target.is_relative_to(real_root):
        raise DataError(
            f"{shown} is a link to a file outside {root}, and minigpt reads nothing outside "
            "the directory given; copy that file in or remove the link"
        )
    try:
        if not target.is_file():
            raise DataError(f"{shown} is not a regular file (a broken link, a pipe?); remove it")
        size = target.stat().st_size
    except OSError as e:
        raise DataError(f"cannot read {shown}: {e.strerror or e}") from e
    return Document(name, target) if size else None


def manifest_sha256(entries: Iterable[tuple[bytes, str]]) -> str:
    """The sha256 of a corpus from each document's name and content sha256, in order.
    A name holds no NUL byte, so name, NUL, 64 hex digits, newline cannot be misread."""
    digest = hashlib.sha256(MANIFEST_HEADER)
    for name, sha in entries:
        digest.update(name + b"\0" + sha.encode("ascii") + b"\n")
    return digest.hexdigest()


def directory_sha256(root: Path) -> str:
    """The sha256 of the text of a directory corpus, as its dataset records it."""
    return manifest_sha256((d.name, _sha256(root, d)) for d in list_documents(root))


def _sha256(root: Path, document: Document) -> str:
    try:
        return file_sha256(document.path)
    except OSError as e:
        shown = root / display(document.name)
        raise DataError(f"cannot read {shown}: {e.strerror or e}") from e


class DocumentsReader:
    """A directory corpus, read document by document in bounded memory; the same two
    passes as a `TextReader`, whose `segments` also mark where each document ends."""

    def __init__(self, root: Path, encoding: str, source: str) -> None:
        self.source = source
        self.documents = list_documents(root)
        self.readers = [
            TextReader(d.path, encoding, f"{source}/{display(d.name)}") for d in self.documents
        ]

    def scan(self, chars: bool = False, head: bool = False) -> Scan:
        """First pass over every document: check, count, hash; `documents` holds each
        one's own scan (for the second pass), `n_chars` counts the added line breaks."""
        parts, first, n_chars, text_found = [], [], 0, False
        for reader in self.readers:
            part = reader.scan(chars, head and n_chars < BPE_TRAIN_CHARS, require_text=False)
            added = "" if part.last == "\n" else "\n"
            first += [part.head, added] if part.head else []
            n_chars += part.n_chars + len(added)
            text_found = text_found or part.has_text
            parts.append(part)
        if not text_found:
            raise DataError(f"{self.source} holds only whitespace; give files with some text")
        seen = set().union(*(p.chars for p in parts))
        if chars and any(p.last != "\n" for p in parts):
            seen.add("\n")
        names = [d.name for d in self.documents]
        sha = manifest_sha256(zip(names, [p.sha256 for p in parts], strict=True))
        light = [replace(p, chars=set(), head="") for p in parts]
        return Scan(sha, n_chars, seen, "".join(first)[:BPE_TRAIN_CHARS], documents=light)

    def segments(
        self, scan: Scan, n_train: int, gpt2_cuts: bool = False
    ) -> Iterator[tuple[str, str | None]]:
        """Second pass: (split, text) pieces of each document in turn, train's first
        n_train characters then val, with (split, END_OF_DOCUMENT) after each document
        in the split of its last character."""
        start = 0  # characters of the corpus before this document
        for reader, part in zip(self.readers, scan.documents, strict=True):
            own_train = min(max(n_train - start, 0), part.n_chars)
            yield from reader.segments(part, own_train, gpt2_cuts)
            start += part.n_chars
            if part.last != "\n":
                yield ("train" if start < n_train else "val"), "\n"
                start += 1
            yield ("train" if start <= n_train else "val"), END_OF_DOCUMENT


def open_corpus(data: bytes | Path, encoding: str, source: str) -> TextReader | DocumentsReader:
    """The reader for a text (bytes or a file) or for a directory of text files."""
    if isinstance(data, Path) and data.is_dir():
        return DocumentsReader(data, encoding, source)
    return TextReader(data, encoding, source)
