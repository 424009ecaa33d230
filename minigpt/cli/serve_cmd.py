"""`minigpt serve`: the model behind an OpenAI-compatible HTTP API, with a web page to
chat with it and look inside it (`minigpt.serve`; this module checks the options,
binds the socket and runs uvicorn).

The socket is bound before anything loads, so a port in use is one clear line; the
model then loads while /health answers 503, and the address is printed once it is
ready. A checkpoint that fails to load stops the server with its error.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from pathlib import Path
from typing import Annotated

from minigpt.checkpoint import find_latest_checkpoint
from minigpt.checkpoint.layout import BEST, LATEST, resolve_snapshot
from minigpt.cli import options as opts
from minigpt.cli.settings import option, with_settings
from minigpt.cli.terminal import stderr
from minigpt.errors import ConfigError, MissingDependencyError
from minigpt.serve.config import ServeConfig

MISSING = 'minigpt serve needs FastAPI and uvicorn; install them with pip install "minigpt[serve]"'


@with_settings("config", ServeConfig)
def serve(
    *,
    checkpoint: opts.CheckpointOpt = None,
    host: Annotated[
        str,
        option(
            "Address to listen on; another than 127.0.0.1 lets other machines in "
            "(give --api-key then).",
            "--host",
            default="127.0.0.1",
            metavar="ADDR",
        ),
    ] = "127.0.0.1",
    port: Annotated[
        int, option("Port to listen on.", "--port", default="8000", metavar="N")
    ] = 8000,
    api_key: Annotated[
        str | None,
        option(
            "Require 'Authorization: Bearer KEY' on every request but /health and the "
            "page (or set MINIGPT_API_KEY).",
            "--api-key",
            default="none",
            metavar="KEY",
        ),
    ] = None,
    config: ServeConfig,
    device: opts.DeviceOpt = "auto",
    threads: opts.ThreadsOpt = None,
    matmul: opts.MatmulOpt = "auto",
    root: opts.RootOpt = Path("checkpoints"),
) -> None:
    """Serve a trained model: OpenAI-compatible API under /v1, a chat page at /."""
    try:
        import uvicorn

        from minigpt.serve.app import create_app
        from minigpt.serve.service import Served
    except ImportError as e:
        raise MissingDependencyError(MISSING) from e
    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be from 0 to 65,535, not {port:,}")
    api_key = api_key or os.environ.get("MINIGPT_API_KEY") or None
    path = resolve_snapshot(checkpoint or find_latest_checkpoint(root))
    name = run_name(path)
    if not is_loopback(host) and not api_key:
        stderr().print(
            f"warning: listening on {host} without --api-key: anyone who can reach "
            "this machine can use the model",
            markup=False,
        )
    sock = listen(host, port)
    shown = (
        f"{host}:{sock.getsockname()[1]}"
        if ":" not in host
        else f"[{host}]:{sock.getsockname()[1]}"
    )
    server: uvicorn.Server | None = None

    def load() -> Served:
        try:
            ckpt, compute = opts.load_for_generation(
                path, root, device, threads, matmul, config.max_batch
            )
            how = str(compute)
            served = Served.start(name, ckpt, config.max_batch, config.max_queue, how)
        except Exception:
            assert server is not None
            server.should_exit = True  # the error is said once, when the server has stopped
            raise
        stderr().print(
            f"serving {name} ({how}) at http://{shown}/ — OpenAI API at "
            f"http://{shown}/v1; Ctrl-C stops",
            markup=False,
        )
        return served

    app = create_app(load, config, api_key)
    quiet = {"log_level": "warning", "access_log": False, "timeout_graceful_shutdown": 3}
    server = uvicorn.Server(uvicorn.Config(app, **quiet))
    server.run(sockets=[sock])
    state = app.state.minigpt
    if state.failed:
        raise ConfigError(f"the model could not be served: {state.failed}")


def run_name(snapshot: Path) -> str:
    """The model's name: its run directory's (a snapshot's own when it has no run)."""
    return snapshot.parent.name if snapshot.name in (LATEST, BEST) else snapshot.name


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or one line saying why not."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ConfigError(
            f"--host {host!r} is not an address this machine has ({e.strerror})"
        ) from e
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as e:
        sock.close()
        hint = "; choose another --port" if e.errno == 98 else ""
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror}{hint}") from e
    sock.listen(128)
    sock.set_inheritable(True)
    return sock
