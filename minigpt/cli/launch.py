"""Command-line rewriting done before Typer parses: a bare `--resume`, and
`minigpt train --nproc N`, which re-runs the same command under torchrun.

Typer options cannot take an optional value, so a `--resume` with no path after it
becomes `--resume=:newest:`. `--nproc N` (N > 1, outside torchrun) starts
`python -m torch.distributed.run --standalone --nproc_per_node N -m minigpt ...` with
the other arguments unchanged and waits for it; torchrun ends every process when one
fails, and this process exits with torchrun's code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from minigpt.errors import ConfigError

RESUME_NEWEST = ":newest:"


def expand_bare_resume(args: list[str]) -> list[str]:
    """`--resume` followed by nothing or by another option -> `--resume=:newest:`."""
    out = []
    for i, arg in enumerate(args):
        nxt = args[i + 1] if i + 1 < len(args) else None
        if arg == "--resume" and (nxt is None or nxt.startswith("-")):
            out.append(f"--resume={RESUME_NEWEST}")
        else:
            out.append(arg)
    return out


def split_nproc(args: list[str]) -> tuple[int | None, list[str]]:
    """The value of `--nproc N` / `--nproc=N` (None if absent) and the other arguments."""
    n, rest, i = None, [], 0
    while i < len(args):
        arg = args[i]
        if arg == "--nproc" and i + 1 < len(args):
            n, i = args[i + 1], i + 2
            continue
        if arg.startswith("--nproc="):
            n = arg.split("=", 1)[1]
        else:
            rest.append(arg)
        i += 1
    if n is None:
        return None, args
    try:
        return int(n), rest
    except ValueError as e:
        raise ConfigError(f"--nproc takes a number of processes, got {n!r}") from e


def under_torchrun() -> bool:
    return "TORCHELASTIC_RUN_ID" in os.environ or "LOCAL_RANK" in os.environ


def launch(nproc: int, args: list[str]) -> int:
    """Run `minigpt ARGS` in nproc processes with torchrun; its exit code."""
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", "-m", "minigpt", *args,
    ]  # fmt: skip
    env = dict(os.environ)
    # torchrun would give each process 1 thread; share the cores instead.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # Ctrl-C reaches every process of the terminal's group: the workers stop cleanly
    # and save, and this launcher just waits for them.
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        proc = subprocess.Popen(command, env=env)
        signal.signal(signal.SIGTERM, lambda signum, frame: proc.terminate())
        return proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous)
