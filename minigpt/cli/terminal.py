"""What every command shares: the consoles it prints to, and the exit codes."""

from __future__ import annotations

from rich.console import Console

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a process ended by SIGINT


def stdout() -> Console:
    """Standard output; into a file or a pipe, lines are never wrapped."""
    console = Console(highlight=False)
    console.soft_wrap = not console.is_terminal
    return console


def stderr() -> Console:
    """Standard error; into a file or a pipe, lines are never wrapped."""
    console = Console(stderr=True, highlight=False)
    console.soft_wrap = not console.is_terminal
    return console
