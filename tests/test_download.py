"""`minigpt download` against a real HTTP server on 127.0.0.1."""

import functools
import hashlib
import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from minigpt.data.download import CORPORA, fetch
from minigpt.errors import DataError
from tests.conftest import SHAKESPEARE


@pytest.fixture
def server(tmp_path: Path) -> Iterator[str]:
    """Serves a folder holding the real tiny shakespeare and a tampered copy."""
    root = tmp_path / "www"
    root.mkdir()
    (root / "input.txt").write_bytes(SHAKESPEARE.read_bytes())
    (root / "tampered.txt").write_bytes(SHAKESPEARE.read_bytes().replace(b"Romeo", b"Romeu"))
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_download_verifies_and_writes(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "data" / "shakespeare.txt"
    assert fetch(CORPORA["shakespeare"], dest, f"{server}/input.txt") == "downloaded"
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == CORPORA["shakespeare"].sha256
    assert fetch(CORPORA["shakespeare"], dest, f"{server}/input.txt") == "present"
    assert [p.name for p in dest.parent.iterdir()] == ["shakespeare.txt"]


def test_wrong_checksum_writes_nothing(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "data" / "shakespeare.txt"
    with pytest.raises(DataError, match="checksum mismatch"):
        fetch(CORPORA["shakespeare"], dest, f"{server}/tampered.txt")
    assert list(dest.parent.iterdir()) == []


def test_http_errors_are_clear(server: str, tmp_path: Path) -> None:
    dest = tmp_path / "data" / "shakespeare.txt"
    with pytest.raises(DataError, match="could not download .*--from"):
        fetch(CORPORA["shakespeare"], dest, f"{server}/missing.txt")
    with pytest.raises(DataError, match="could not download"):
        fetch(CORPORA["shakespeare"], dest, "http://127.0.0.1:9/input.txt")
    assert list(dest.parent.iterdir()) == []


def test_local_copy_and_existing_file(tmp_path: Path) -> None:
    dest = tmp_path / "shakespeare.txt"
    assert fetch(CORPORA["shakespeare"], dest, str(SHAKESPEARE)) == "downloaded"
    other = tmp_path / "other" / "shakespeare.txt"
    other.parent.mkdir()
    other.write_text("my own notes")
    with pytest.raises(DataError, match="exists and is not"):
        fetch(CORPORA["shakespeare"], other, str(SHAKESPEARE))
    assert other.read_text() == "my own notes"
    with pytest.raises(DataError, match="no such file"):
        fetch(CORPORA["shakespeare"], tmp_path / "x.txt", str(tmp_path / "nope.txt"))


def test_progress_is_reported_for_every_chunk(server: str, tmp_path: Path) -> None:
    seen: list[tuple[int, int | None]] = []
    dest = tmp_path / "shakespeare.txt"
    fetch(CORPORA["shakespeare"], dest, f"{server}/input.txt", progress=lambda *a: seen.append(a))
    size = SHAKESPEARE.stat().st_size
    received = [r for r, _ in seen]
    assert received == sorted(received) and received[-1] == size and len(seen) > 1
    assert {expected for _, expected in seen} == {size}  # the announced Content-Length
