"""What every command shares: the consoles it prints to, and the exit codes."""

from __future__ import annotations

import errno
import os

from rich.console import Console

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a process ended by SIGINT


class _Console(Console):
    """A rich Console whose closed output is an error the caller can handle: rich itself
    exits the process at once (SystemExit), which would skip a graceful stop."""

    def on_broken_pipe(self) -> None:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, self.file.fileno())  # what follows (and the flush at exit) is dropped
        os.close(devnull)
        raise BrokenPipeError(errno.EPIPE, "the output was closed")


def stdout() -> Console:
    """Standard output; into a file or a pipe, lines are never wrapped."""
    console = _Console(highlight=False)
    console.soft_wrap = not console.is_terminal
    return console


def stderr() -> Console:
    """Standard error; into a file or a pipe, lines are never wrapped."""
    console = _Console(stderr=True, highlight=False)
    console.soft_wrap = not console.is_terminal
    return console
