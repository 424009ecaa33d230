"""Command-line rewriting done before Typer parses: a bare `--resume`, and
`minigpt train --nproc N`, which re-runs the same command under torchrun.

Typer options cannot take an optional value, so a `--resume` with no path after it
becomes `--resume=:newest:`. `--nproc N` (N > 1, outside torchrun) starts
`python -m torch.distributed.run --standalone --nproc_per_node N -m -- minigpt ...` with
the other arguments unchanged and waits for it; torchrun ends every process when one
fails, and this process exits with torchrun's code.

The `--` matters: torchrun's argparse reads the whole command line for its own options
and accepts abbreviations, so without it minigpt's `--run NAME` stops torchrun with
"ambiguous option: --run could match --run-path, --run_path". After `--` every word is
the module and its arguments, passed through untouched.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from types import FrameType

from minigpt.errors import EXIT_INTERRUPTED, ConfigError

RESUME_NEWEST = ":newest:"
STOP_GRACE_S = 600  # seconds the workers get to finish a step and save once told to stop


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


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """The command that runs `minigpt ARGS` in nproc processes on this machine."""
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc_per_node={nproc}", "-m", "--", "minigpt", *args,
    ]  # fmt: skip


def launch(nproc: int, args: list[str]) -> int:
    """Run `minigpt ARGS` in nproc processes with torchrun; its exit code (130 after
    Ctrl-C, like a single process)."""
    command = torchrun_command(nproc, args)
    env = dict(os.environ)
    # torchrun would give each process 1 thread; share the cores instead.
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // nproc)))
    # torchrun SIGKILLs workers still running this long after it passed them a stop
    # signal (30 s by default): give a slow step and its checkpoint time to finish.
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(STOP_GRACE_S))
    # torchrun starts each worker in a session of its own, so Ctrl-C reaches this
    # launcher and torchrun only; torchrun passes each signal on to the workers (the
    # first one stops them after the step, with a save; a second one at once). This
    # process just waits, and remembers that the user asked to stop.
    interrupted = False

    def on_interrupt(signum: int, frame: FrameType | None) -> None:
        nonlocal interrupted
        interrupted = True

    def on_terminate(signum: int, frame: FrameType | None) -> None:
        on_interrupt(signum, frame)
        proc.terminate()  # a SIGTERM (e.g. from a job scheduler) is passed on to torchrun

    previous_int = signal.signal(signal.SIGINT, on_interrupt)
    previous_term = signal.getsignal(signal.SIGTERM)
    try:
        proc = subprocess.Popen(command, env=env)
        signal.signal(signal.SIGTERM, on_terminate)
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, previous_int)
        signal.signal(signal.SIGTERM, previous_term)
    # torchrun reports workers that stopped on a signal as failed (exit code 1).
    return EXIT_INTERRUPTED if interrupted and code != 0 else code
