"""Load on `minigpt serve`: aggregate tokens/s and latency at 1, 4, 8 and 16 concurrent
streaming clients, and a soak with clients that come, leave mid-stream and send
malformed requests.

The server is a real `minigpt serve` process on 127.0.0.1 (--max-batch 16). Its model
is --checkpoint, or, without one, a model of the default shape trained for a few
steps on ../shared/data/shakespeare.txt (the speed depends on the shape, not on how
well it is trained). Each client is an asyncio task with its own keep-alive HTTP
connection (`Connection`: a lean reader of server-sent events, since the clients share
the machine's cores with the server) that sends streamed completions back to back:
--new-tokens tokens each, `ignore_eos` so every request makes all of them, a different
seed each.

Per concurrency level, --repeats rounds of --requests requests per client, the levels
in rotation (1, 4, 8, 16, 1, 4, ...) so machine noise hits all alike; the table gives
medians over rounds of:
- aggregate tokens/s: tokens streamed by all clients / wall time of the round;
- TTFT p50/p95: from sending a request to its first content chunk;
- ITL p50: the gap between consecutive chunks of one stream;
and the ratio of each level's aggregate tokens/s to one client's. Every request must
succeed (and end with `data: [DONE]`): a failure or a hang fails the run.

--soak S then runs S seconds of mixed traffic (8 clients streaming to the end, 4 that
disconnect after a few chunks, 2 sending malformed bodies) and reports the server's
resident memory (VmRSS) after a warm-up and at the end, and that /health still answers.

    python benchmarks/serve_load.py [--checkpoint RUN] [--repeats 3] [--soak 180]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
SHAKESPEARE = ROOT.parent / "shared" / "data" / "shakespeare.txt"
LEVELS = (1, 4, 8, 16)


@dataclass
class Round:
    tokens: int = 0
    seconds: float = 0.0
    ttft: list[float] = field(default_factory=list)
    gaps: list[float] = field(default_factory=list)


def minigpt(*args: object, **popen: object) -> subprocess.Popen:
    """A `python -m minigpt ARGS` process of this checkout."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "minigpt", *map(str, args)], env=env, **popen)


def train_default(out: Path) -> Path:
    """A model of the default shape, a few steps into training."""
    args = ("train", SHAKESPEARE, "--max-iters", 20, "--eval-interval", 20, "--out", out)
    if minigpt(*args, "--run", "default", stdout=subprocess.DEVNULL).wait() != 0:
        raise SystemExit("training the model to serve failed")
    return out / "default"


def start_server(run: Path, port: int, log: Path) -> subprocess.Popen:
    args = ("serve", "-c", run, "--port", port, "--max-batch", 16, "--max-tokens", 100_000)
    process = minigpt(*args, stdout=log.open("wb"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health").status_code == 200:
                return process
        except httpx.TransportError:
            pass
        if process.poll() is not None:
            raise SystemExit(f"the server stopped: {log.read_text()}")
        time.sleep(0.2)
    raise SystemExit("the server did not get ready")


class Connection:
    """One keep-alive HTTP/1.1 connection that streams completions, reading the events
    with as little work as it can: the clients share the machine with the server, and
    httpx's line iterator cost about 0.35 ms of CPU per token, CPU taken from the
    server at 8 clients."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer

    @classmethod
    async def open(cls, port: int) -> Connection:
        return cls(*await asyncio.open_connection("127.0.0.1", port))

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError):
            await self.writer.wait_closed()

    async def events(self, path: str, body: dict) -> AsyncIterator[bytes]:
        """POST `body` to `path`; the data of each server-sent event as it arrives."""
        data = json.dumps(body).encode()
        self.writer.write(
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(data)}\r\n\r\n".encode()
            + data
        )
        head = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1")
        status = head.split(" ", 2)[1]
        if status != "200" or "transfer-encoding: chunked" not in head.lower():
            raise SystemExit(f"a request failed: {head.splitlines()[0]}")
        pending = b""
        while size := int((await self.reader.readline()).strip(), 16):
            pending += (await self.reader.readexactly(size + 2))[:-2]  # a chunk, its CRLF
            *whole, pending = pending.split(b"\n\n")
            for event in whole:
                if event.startswith(b"data: "):
                    yield event[6:]
        await self.reader.readexactly(2)  # the last chunk's CRLF


async def stream_one(
    conn: Connection, tokens: int, seed: int, rnd: Round, leave_after: int | None = None
) -> None:
    body = {
        "prompt": "ROMEO:",
        "max_tokens": tokens,
        "stream": True,
        "seed": seed,
        "ignore_eos": True,
        "temperature": 0.8,
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    last = None
    chunks = 0
    done = False
    async for data in conn.events("/v1/completions", body):
        if data == b"[DONE]":
            done = True
            continue  # read to the end of the response: the connection is kept
        if b'"error"' in data or b'"usage"' in data:  # parsed only when needed
            event = json.loads(data)
            if "error" in event:
                raise SystemExit(f"a stream failed: {event}")
            if event.get("usage"):
                rnd.tokens += event["usage"]["completion_tokens"]
                continue
        now = time.perf_counter()
        if last is None:
            rnd.ttft.append(now - start)
        else:
            rnd.gaps.append(now - last)
        last = now
        chunks += 1
        if leave_after is not None and chunks >= leave_after:
            return  # the client goes away mid-stream
    if not done:
        raise SystemExit("a stream ended without [DONE]")


async def run_level(port: int, clients: int, requests: int, tokens: int) -> Round:
    rnd = Round()

    async def client_task(i: int) -> None:
        conn = await Connection.open(port)
        try:
            for r in range(requests):
                await stream_one(conn, tokens, 1000 * i + r, rnd)
        finally:
            await conn.close()

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(client_task(i) for i in range(clients))), 1800)
    rnd.seconds = time.perf_counter() - start
    return rnd


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


async def soak(port: int, seconds: float, tokens: int) -> dict[str, int]:
    """Mixed traffic for `seconds`; counts of what was done."""
    end = time.monotonic() + seconds
    counts = {"completed": 0, "left": 0, "malformed": 0}
    rnd = Round()

    async def finisher(i: int) -> None:
        conn = await Connection.open(port)
        try:
            while time.monotonic() < end:
                await stream_one(conn, tokens, random.randrange(1 << 30), rnd)
                counts["completed"] += 1
        finally:
            await conn.close()

    async def leaver(i: int) -> None:
        while time.monotonic() < end:
            conn = await Connection.open(port)
            try:
                await stream_one(
                    conn, tokens * 10, random.randrange(1 << 30), rnd,
                    leave_after=random.randint(1, 20),
                )  # fmt: skip
            finally:
                await conn.close()
            counts["left"] += 1

    async def vandal(i: int) -> None:
        bad = [
            b"{not json",
            b"[]",
            b'{"prompt": 5}',
            b'{"prompt": "a", "n": 0}',
            b'{"messages": [{"role": "robot"}]}',
            b"\xff" * 100,
            b'{"prompt": "a", "max_tokens": -3}',
            b'{"prompt": "a", "temperature": "hot"}',
        ]
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as client:
            while time.monotonic() < end:
                path = random.choice(["/v1/completions", "/v1/chat/completions"])
                response = await client.post(path, content=random.choice(bad))
                if response.status_code != 400 or "error" not in response.json():
                    raise SystemExit(f"a malformed request got {response.status_code}")
                counts["malformed"] += 1
                await asyncio.sleep(0.01)

    tasks = [finisher(i) for i in range(8)] + [leaver(i) for i in range(4)]
    await asyncio.gather(*tasks, *(vandal(i) for i in range(2)))
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--checkpoint", type=Path)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--requests", type=int, default=2, help="requests per client a round")
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--soak", type=float, default=0.0, help="seconds of mixed traffic")
    parser.add_argument("--port", type=int, default=8765)
    args = parser.parse_args()
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(ROOT.parent / "shared" / "tiktoken-cache"))
    with tempfile.TemporaryDirectory() as tmp:
        run = args.checkpoint or train_default(Path(tmp))
        log = Path(tmp) / "serve.log"
        server = start_server(run, args.port, log)
        url = f"http://127.0.0.1:{args.port}"  # for the status checks after the soak
        try:
            print(log.read_text().strip())
            asyncio.run(run_level(args.port, 2, 1, 16))  # warm-up
            rounds: dict[int, list[Round]] = {n: [] for n in LEVELS}
            for r in range(args.repeats):
                for n in LEVELS:
                    level = run_level(args.port, n, args.requests, args.new_tokens)
                    rounds[n].append(asyncio.run(level))
                    last = rounds[n][-1]
                    print(
                        f"  round {r + 1}, {n:2d} clients: {last.tokens / last.seconds:7.1f} tok/s"
                    )
            report(rounds)
            if args.soak:
                before = rss(server.pid)
                counts = asyncio.run(soak(args.port, args.soak, args.new_tokens))
                after = rss(server.pid)
                health = httpx.get(url + "/health").json()
                status = httpx.get(url + "/v1/minigpt/status").json()
                print(
                    f"\nsoak {args.soak:.0f} s: {counts}; resident memory {before / 2**20:.1f} "
                    f"MiB before, {after / 2**20:.1f} MiB after ({(after - before) / 2**20:+.1f}); "
                    f"/health {health['status']}; rows decoding afterwards {status['rows']}"
                )
        finally:
            server.terminate()
            server.wait(30)


def report(rounds: dict[int, list[Round]]) -> None:
    base = statistics.median(r.tokens / r.seconds for r in rounds[1])
    print(
        f"\n{'clients':>7} {'tok/s':>8} {'x one':>6} {'TTFT p50':>9} {'TTFT p95':>9} {'ITL p50':>8}"
    )
    for n, rs in rounds.items():
        agg = statistics.median(r.tokens / r.seconds for r in rs)
        ttft50 = statistics.median(percentile(r.ttft, 0.5) for r in rs)
        ttft95 = statistics.median(percentile(r.ttft, 0.95) for r in rs)
        itl = statistics.median(percentile(r.gaps, 0.5) for r in rs)
        print(
            f"{n:>7} {agg:>8.1f} {agg / base:>6.2f} {ttft50 * 1e3:>7.1f}ms {ttft95 * 1e3:>7.1f}ms "
            f"{itl * 1e3:>6.2f}ms"
        )


if __name__ == "__main__":
    main()
