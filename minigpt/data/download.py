"""Fetching public corpora (tiny shakespeare) into data/, checked by sha256.

The source is the corpus's canonical URL, or a mirror URL or local path the user
gives. The file is streamed to a temporary sibling, its hash checked, and only then
renamed into place: a failed or corrupt download never replaces anything.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from minigpt.errors import DataError
from minigpt.fileio import PathLike, file_sha256


@dataclass(frozen=True)
class Corpus:
    name: str
    url: str
    sha256: str
    filename: str


CORPORA = {
    "shakespeare": Corpus(
        name="shakespeare",
        url="https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt",
        sha256="86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed",
        filename="shakespeare.txt",
    ),
}

MAX_DOWNLOAD_BYTES = 1 << 30
CHUNK = 1 << 16


def corpus(name: str) -> Corpus:
    if name not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; available: {', '.join(CORPORA)}")
    return CORPORA[name]


def _open_source(source: str, timeout: float):
    """A readable binary stream for a URL (http, https, file) or a local path."""
    if "://" in source:
        try:
            return urllib.request.urlopen(source, timeout=timeout)  # noqa: S310 - user's URL
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            reason = getattr(e, "reason", None) or e
            raise DataError(
                f"could not download {source} ({reason}); if you are offline, "
                "pass --from with a local copy"
            ) from e
    path = Path(source)
    if not path.is_file():
        raise DataError(f"--from {source}: no such file")
    return open(path, "rb")  # noqa: SIM115 - closed by the caller's with-block


def fetch(
    c: Corpus,
    dest: PathLike,
    source: PathLike | None = None,
    timeout: float = 30.0,
) -> str:
    """Put corpus `c` at `dest` from its URL, or from `source` (a URL or a local file);
    returns "downloaded" or "present" (already there, verified)."""
    dest = Path(dest)
    source = os.fspath(source) if source is not None else None
    if dest.is_file() and file_sha256(dest) == c.sha256:
        return "present"
    if dest.exists():
        raise DataError(
            f"{dest} exists and is not the expected {c.name} file; move it away and run again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        digest = hashlib.sha256()
        size = 0
        with os.fdopen(fd, "wb") as out, _open_source(source or c.url, timeout) as src:
            while chunk := _read(src, source or c.url):
                size += len(chunk)
                if size > MAX_DOWNLOAD_BYTES:
                    raise DataError(f"{source or c.url} is larger than expected; wrong URL?")
                digest.update(chunk)
                out.write(chunk)
            out.flush()
            os.fsync(out.fileno())
        if digest.hexdigest() != c.sha256:
            raise DataError(
                f"checksum mismatch for {source or c.url}: sha256 {digest.hexdigest()[:16]}... "
                f"is not {c.sha256[:16]}...; the file is not tiny {c.name}, nothing was written"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return "downloaded"


def _read(src, where: str) -> bytes:
    try:
        return src.read(CHUNK)
    except (OSError, http.client.HTTPException) as e:  # e.g. IncompleteRead
        raise DataError(f"the download from {where} broke off ({e}); try again") from e
