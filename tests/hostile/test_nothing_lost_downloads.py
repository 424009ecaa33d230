"""A download ends, and leaves nothing behind ("nothing lost" issue, item 25).

A real HTTP server on 127.0.0.1 that trickles its answer a byte at a time (never
silent long enough for a per-read timeout), and real processes and signals.
"""

from __future__ import annotations

import functools
import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from minigpt.data.download import CORPORA, Limits, fetch
from minigpt.errors import EXIT_INTERRUPTED, DataError

SIZE = 1_115_394  # tiny shakespeare's length, announced by the trickling server


class TrickleHandler(http.server.BaseHTTPRequestHandler):
    """Announces the whole file, then sends one byte every `interval` seconds."""

    def __init__(self, *args: object, interval: float, stop: threading.Event) -> None:
        self.interval, self.stop = interval, stop
        super().__init__(*args)  # type: ignore[arg-type]

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", str(SIZE))
        self.end_headers()
        try:
            while not self.stop.wait(self.interval):
                self.wfile.write(b"x")
                self.wfile.flush()
        except OSError:  # the client went away
            pass

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def trickle() -> Iterator[str]:
    """The URL of a server sending a byte every 0.2 s."""
    stop = threading.Event()
    handler = functools.partial(TrickleHandler, interval=0.2, stop=stop)
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/input.txt"
    stop.set()
    httpd.shutdown()
    httpd.server_close()


def test_a_trickling_download_ends_at_its_deadline(cli, trickle: str, tmp_path: Path) -> None:
    """Before: one byte every few seconds never tripped the 30 s per-read timeout, and
    the download hung with no output."""
    start = time.monotonic()
    outcome = cli("download", "--from", trickle, "--dir", tmp_path / "data", "--timeout", "2s")
    assert time.monotonic() - start < 10
    assert outcome.one_clear_line, outcome.err
    assert "did not finish within 2 s" in outcome.err and f"of {SIZE:,} received" in outcome.err
    assert "--timeout" in outcome.err and list((tmp_path / "data").iterdir()) == []


def test_a_download_below_the_minimum_pace_is_given_up(trickle: str, tmp_path: Path) -> None:
    limits = Limits(stall_seconds=1.0, stall_bytes=1024)  # the deadline stays 10 minutes
    start = time.monotonic()
    with pytest.raises(DataError, match=r"stalled: fewer than 1,024 bytes in 1 s"):
        fetch(CORPORA["shakespeare"], tmp_path / "shakespeare.txt", trickle, limits)
    assert time.monotonic() - start < 5 and list(tmp_path.iterdir()) == []


def start_download(url: str, data: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.Popen(
        [sys.executable, "-m", "minigpt", "download", "--from", url, "--dir", str(data)],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def wait_for_part_file(data: Path, process: subprocess.Popen[str]) -> None:
    """Until the download has its .part file, and a second more of bytes arriving."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if data.is_dir() and list(data.glob("*.part")):
            time.sleep(1.0)
            return
        time.sleep(0.05)
    raise AssertionError(f"no .part file appeared: {process.poll()=}")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stopped_download_removes_its_part_file(
    trickle: str, tmp_path: Path, sig: signal.Signals
) -> None:
    """Before: SIGTERM killed the process on the spot and left `.shakespeare.txt.*.part`."""
    data = tmp_path / "data"
    process = start_download(trickle, data)
    wait_for_part_file(data, process)
    process.send_signal(sig)
    _, err = process.communicate(timeout=30)
    assert process.returncode == EXIT_INTERRUPTED, err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err, err
    name = "SIGTERM" if sig == signal.SIGTERM else "Ctrl-C"
    assert err.startswith(f"error: interrupted ({name}): the download stopped and its partial")
    assert list(data.iterdir()) == []
