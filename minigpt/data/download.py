"""Fetching public corpora (tiny shakespeare) into data/, checked by sha256.

The source is the corpus's canonical URL, or a mirror URL or local path the user
gives. The file is streamed to a temporary sibling, its hash checked, and only then
renamed into place: a failed or corrupt download never replaces anything, and the
temporary file is removed whatever ends it. A download is held to `Limits`: a total
deadline, and a minimum pace (a server that trickles a byte every few seconds would
otherwise never trip a per-read timeout); the caller is told of every chunk.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

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

Progress = Callable[[int, int | None], None]  # (bytes received, bytes expected or None)


@dataclass(frozen=True)
class Limits:
    """How long a download may take: `deadline` seconds in all; at least `stall_bytes`
    in every `stall_seconds` (a server that trickles a byte at a time is given up on,
    not waited for); no read waits longer than `read_timeout`."""

    deadline: float = 600.0
    stall_seconds: float = 30.0
    stall_bytes: int = 1024
    read_timeout: float = 30.0

    @property
    def wait(self) -> float:
        """The longest one read may block: a silent server is noticed in time."""
        return max(min(self.read_timeout, self.deadline, self.stall_seconds), 0.001)


def corpus(name: str) -> Corpus:
    if name not in CORPORA:
        raise DataError(f"unknown corpus {name!r}; available: {', '.join(CORPORA)}")
    return CORPORA[name]


def _open_source(source: str, timeout: float) -> BinaryIO:
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
    limits: Limits | None = None,
    progress: Progress | None = None,
) -> str:
    """Put corpus `c` at `dest` from its URL, or from `source` (a URL or a local file);
    returns "downloaded" or "present" (already there, verified).

    The bytes go to a temporary `.part` file beside `dest`, which is removed whatever
    ends the download (an error, a limit, Ctrl-C); `progress` hears of every chunk."""
    dest = Path(dest)
    source = os.fspath(source) if source is not None else None
    if dest.is_file() and file_sha256(dest) == c.sha256:
        return "present"
    if dest.exists():
        raise DataError(
            f"{dest} exists and is not the expected {c.name} file; move it away and run again"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    where, limits = source or c.url, limits or Limits()
    fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out, _open_source(where, limits.wait) as src:
            digest = _copy(src, out, _Pace(where, limits, _expected(src)), progress)
            out.flush()
            os.fsync(out.fileno())
        if digest != c.sha256:
            raise DataError(
                f"checksum mismatch for {where}: sha256 {digest[:16]}... "
                f"is not {c.sha256[:16]}...; the file is not tiny {c.name}, nothing was written"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return "downloaded"


def _copy(src: BinaryIO, out: BinaryIO, pace: _Pace, progress: Progress | None) -> str:
    """Copy src to out within the limits; the sha256 of what was copied."""
    digest = hashlib.sha256()
    read = getattr(src, "read1", src.read)  # whatever has arrived, not a full chunk
    while chunk := pace.read(read):
        if pace.received > MAX_DOWNLOAD_BYTES:
            raise DataError(f"{pace.where} is larger than expected; wrong URL?")
        digest.update(chunk)
        out.write(chunk)
        if progress is not None:
            progress(pace.received, pace.expected)
    return digest.hexdigest()


def _expected(src: BinaryIO) -> int | None:
    """The size the source announces (Content-Length, a file's size), if any."""
    headers = getattr(src, "headers", None)
    length = headers.get("Content-Length") if headers is not None else None
    if length is not None and length.isdigit():
        return int(length)
    try:
        return os.fstat(src.fileno()).st_size
    except (OSError, AttributeError, ValueError, io.UnsupportedOperation):
        return None


class _Pace:
    """A download's progress held to its `Limits`: each read is checked against the
    deadline and the minimum pace, and its failures become one clear `DataError`."""

    def __init__(self, where: str, limits: Limits, expected: int | None) -> None:
        self.where, self.limits, self.expected = where, limits, expected
        self.start = self.window_start = time.monotonic()
        self.received = self.window_received = 0

    def read(self, read: Callable[[int], bytes]) -> bytes:
        try:
            chunk = read(CHUNK)
        except TimeoutError as e:
            self._check(time.monotonic(), silent=True)
            raise DataError(
                f"the download from {self.where} got no data for {self.limits.wait:g} s; "
                "try again later, or pass --from with a local copy"
            ) from e
        except (OSError, http.client.HTTPException) as e:  # e.g. IncompleteRead
            raise DataError(f"the download from {self.where} broke off ({e}); try again") from e
        self.received += len(chunk)
        if chunk:
            self._check(time.monotonic())
        return chunk

    def _check(self, now: float, silent: bool = False) -> None:
        limits, got = self.limits, f"{self.received:,} bytes"
        if self.expected:
            got += f" of {self.expected:,}"
        if now - self.start > limits.deadline:
            raise DataError(
                f"the download from {self.where} did not finish within {limits.deadline:g} s "
                f"({got} received); try again, allow more with --timeout, or pass --from "
                "with a local copy"
            )
        if now - self.window_start >= limits.stall_seconds or silent:
            if self.received - self.window_received < limits.stall_bytes:
                raise DataError(
                    f"the download from {self.where} stalled: fewer than "
                    f"{limits.stall_bytes:,} bytes in {limits.stall_seconds:g} s ({got} "
                    "received); try again later, or pass --from with a local copy"
                )
            self.window_start, self.window_received = now, self.received
