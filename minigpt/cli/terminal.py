r"""What every command shares: the standard streams and the consoles it prints to.

The standard streams follow one rule in every command (`prepare_streams`, which `main`
runs first; `user_text` and `json_line` for what goes in and out):

- Closed (`>&-`, `<&-`): a closed stdout is refused before anything starts, since every
  command writes its results there (redirect it to a file, or to /dev/null to discard
  them); a closed stdin is refused by the command that reads it (`chat`); a closed
  stderr is /dev/null (the exit code still says how the command ended). /dev/null holds
  a closed stream's number, so no file a command opens can take it.
- Out: a character the stream's encoding (the locale's, or PYTHONIOENCODING) cannot hold
  is written as a backslash escape (an em dash as `\u2014`), never an error; JSON then
  uses JSON's own escapes, so it stays valid JSON.
- In: text given on the command line or on stdin (a prompt, `--text`, `--stop`,
  `--pin`, a chat turn) is UTF-8. Bytes the locale could not decode are read as UTF-8
  (a C locale still takes UTF-8 text); bytes that are not UTF-8 are refused in one line.
"""

from __future__ import annotations

import codecs
import errno
import io
import json
import os
import sys
from typing import Any, TextIO

from rich.console import Console

from minigpt.errors import ConfigError, DataError

STANDARD_STREAMS = ("stdin", "stdout", "stderr")  # file descriptors 0, 1 and 2
STDOUT_CLOSED = (
    "stdout is closed, and minigpt writes its results there; redirect it to a file "
    "(or to /dev/null to discard them) instead of closing it"
)

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


def prepare_streams() -> None:
    """Apply the module's rule to this process's standard streams (see above); raises
    ConfigError when stdout is closed."""
    for fd, name in enumerate(STANDARD_STREAMS):
        if getattr(sys, name) is None:  # Python found the descriptor closed at start
            _hold_with_devnull(fd)
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # /dev/null now
    _set_errors(sys.stdin, "surrogateescape")  # undecodable bytes reach `user_text`
    _set_errors(sys.stdout, "backslashreplace")
    _set_errors(sys.stderr, "backslashreplace")
    if sys.stdout is None:
        raise ConfigError(STDOUT_CLOSED)


def _hold_with_devnull(fd: int) -> None:
    """Open /dev/null at the number `fd` if it is still free."""
    try:
        os.fstat(fd)
        return  # taken since the start: not ours to replace
    except OSError:
        pass
    null = os.open(os.devnull, os.O_RDWR)  # the lowest free number: often `fd` itself
    if null != fd:
        os.dup2(null, fd)
        os.close(null)
    os.set_inheritable(fd, True)  # as a standard stream is, for child processes


def _set_errors(stream: TextIO | None, errors: str) -> None:
    if isinstance(stream, io.TextIOWrapper):  # not a test's capture or a closed stream
        stream.reconfigure(errors=errors)


def stdin_for(reader: str) -> TextIO:
    """Standard input for a command that reads it (`reader` says what for); a closed one
    is refused."""
    if sys.stdin is None:
        raise ConfigError(
            f"stdin is closed, and {reader}; give it a terminal, a file or a pipe "
            "(< /dev/null for nothing) instead of closing it"
        )
    return sys.stdin


def user_text(text: str, what: str, encoding: str | None = None) -> str:
    """`text` from the command line (or, with its stream's `encoding`, from stdin) as the
    UTF-8 text it must be; `what` names it in the refusal ("the prompt", "--stop").

    Python keeps the bytes the locale could not decode as lone surrogates; they are
    turned back into the bytes and read as UTF-8, or refused when they are not UTF-8."""
    try:
        text.encode("utf-8")
        return text  # the locale decoded every byte
    except UnicodeEncodeError:
        pass
    try:
        raw = text.encode(encoding or sys.getfilesystemencoding(), "surrogateescape")
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        where = f"byte 0x{e.object[e.start]:02x} at offset {e.start}"
    except UnicodeEncodeError as e:  # a surrogate no decoder made: not text either
        where = f"U+{ord(e.object[e.start]):04X} at character {e.start}"
    raise DataError(f"{what} is not UTF-8 text ({where}); give it as UTF-8")


def json_line(record: dict[str, Any], stream: TextIO) -> str:
    """`record` as one line of JSON for `stream`: characters as they are where the
    stream's encoding is Unicode, else JSON's `\\u` escapes (valid JSON either way)."""
    encoding = getattr(stream, "encoding", None) or "utf-8"
    unicode = codecs.lookup(encoding).name.startswith("utf")
    return json.dumps(record, ensure_ascii=not unicode) + "\n"
