"""What the server tests share: a small trained run, and a real `minigpt serve` process
on 127.0.0.1 at a free port, waited for until /health says it is ready."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from minigpt.cli import main
from tests.conftest import SHAKESPEARE

ROOT = Path(__file__).resolve().parents[1]


def train_small_run(out: Path, name: str = "bard", *extra: object) -> Path:
    """A few steps of the tiny preset with a BPE tokenizer: a real run to serve."""
    corpus = out / "corpus.txt"
    corpus.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    args = ["train", corpus, "--preset", "tiny", "--vocab-size", 300, "--max-iters", 20,
            "--eval-interval", 20, "--out", out, "--run", name, *extra]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    return out / name


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    url: str  # http://127.0.0.1:PORT
    process: subprocess.Popen
    log: Path  # its stderr and stdout

    def get(self, path: str, key: str | None = None) -> tuple[int, dict]:
        return http("GET", self.url + path, key=key)

    def post(self, path: str, body: object, key: str | None = None) -> tuple[int, dict]:
        return http("POST", self.url + path, body, key=key)

    def rss(self) -> int:
        """The server process's resident memory, bytes."""
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
        raise AssertionError("no VmRSS")


def http(
    method: str, url: str, body: object = None, key: str | None = None, raw: bytes | None = None
) -> tuple[int, dict]:
    """Status and JSON body of one request (errors included)."""
    data = raw if raw is not None else None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Authorization"] = f"Bearer {key}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=120) as response:
            return response.status, json.loads(response.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


@contextmanager
def running_server(run: Path, *args: object, tmp: Path, ready: bool = True) -> Iterator[Server]:
    """`minigpt serve -c RUN ARGS` on a free port; with `ready`, returned once /health
    answers 200. Stopped (and its log kept in `tmp`) afterwards."""
    port = free_port()
    log = tmp / f"serve-{port}.log"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "minigpt", "serve", "-c", str(run), "--port", str(port),
               "--matmul", "default", *map(str, args)]  # fmt: skip
    with open(log, "wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    server = Server(f"http://127.0.0.1:{port}", process, log)
    try:
        if ready:
            wait_ready(server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def wait_ready(server: Server, seconds: float = 120) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        assert server.process.poll() is None, server.log.read_text()
        try:
            if server.get("/health")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.1)
    raise AssertionError(f"the server did not get ready: {server.log.read_text()}")
