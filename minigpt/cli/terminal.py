"""What every command shares: the consoles it prints to, and the exit codes."""

from __future__ import annotations

import errno
import os
from typing import TextIO

from rich.console import Console

EXIT_USER_ERROR = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130  # Ctrl-C, as a shell reports a process ended by SIGINT


# Control characters as visible symbols (U+2400 "Control Pictures": ESC shows as ␛), so
# that text a model writes can never move the cursor, clear or retitle a terminal.
_VISIBLE = {code: chr(0x2400 + code) for code in range(0x20) if chr(code) not in "\n\t"}
_VISIBLE |= {0x7F: "\u2421"} | {code: f"\\x{code:02x}" for code in range(0x80, 0xA0)}


def visible_controls(text: str) -> str:
    """`text` with every control character but newline and tab shown as a symbol."""
    return text.translate(_VISIBLE)


def for_terminal(text: str, stream: TextIO) -> str:
    """What to write of model text: visible controls on a terminal, the text itself into
    a pipe or a file (where it is data, not commands to a screen)."""
    return visible_controls(text) if stream.isatty() else text


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
