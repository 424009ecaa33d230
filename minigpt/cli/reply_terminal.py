"""The terminal while a chat reply streams (`ReplyTerminal`).

Keys typed during a reply neither show inside it nor reach the next prompt: echo is
off while it streams, and what was typed is discarded when it ends (a predictable
prompt beats a half-remembered line). NOFLSH keeps the terminal driver from discarding
output already written when Ctrl-C comes (by default it may: the last chunk would be
kept in the transcript but never seen). Ctrl-C stops the reply only while the model
computes the next chunk, never halfway through printing one: a chunk is either shown
whole and kept, or neither (rich, interrupted between writing a chunk and clearing its
buffer, printed it again with the next line: the last word twice).
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from types import FrameType, ModuleType, TracebackType
from typing import Any, TypeVar

T = TypeVar("T")


def import_termios() -> ModuleType | None:
    """termios, where the platform has it (not on Windows)."""
    try:
        import termios
    except ImportError:
        return None
    return termios


class ReplyTerminal:
    """A context manager around one streamed reply; `next_chunk` is where Ctrl-C lands.

    `fd` is the terminal the user types on (None, or not a terminal: echo is left
    alone). Entering turns its echo off and defers Ctrl-C; leaving, however it leaves,
    restores both and discards the keys typed meanwhile."""

    def __init__(self, fd: int | None) -> None:
        self.fd = fd if fd is not None and os.isatty(fd) else None
        self.termios = import_termios() if self.fd is not None else None
        self._saved: list[Any] | None = None
        self._previous: Any = None
        self._live = False  # True while the model computes: Ctrl-C raises at once
        self._pending = False  # Ctrl-C came while a chunk printed

    def __enter__(self) -> ReplyTerminal:
        if threading.current_thread() is threading.main_thread():  # else: no signals
            self._previous = signal.signal(signal.SIGINT, self._interrupt)
        if self.termios is not None:
            try:
                self._saved = self.termios.tcgetattr(self.fd)
                quiet = list(self._saved)
                quiet[3] &= ~self.termios.ECHO  # the local modes
                # Ctrl-C must not make the terminal driver discard output already
                # written: the last chunk would be kept but never seen.
                quiet[3] |= self.termios.NOFLSH
                self.termios.tcsetattr(self.fd, self.termios.TCSANOW, quiet)
            except self.termios.error:
                self._saved = None  # not a terminal after all: nothing to restore
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
        if self.termios is not None and self._saved is not None:
            try:  # TCSAFLUSH: restore echo and drop the keys typed during the reply
                self.termios.tcsetattr(self.fd, self.termios.TCSAFLUSH, self._saved)
            except self.termios.error:
                pass  # the terminal went away; nothing left to restore

    def next_chunk(self, chunks: Iterator[T]) -> T | None:
        """The next chunk, None at the end. KeyboardInterrupt comes from here only: at
        once while the model computes, or here next time for a Ctrl-C pressed while the
        previous chunk was printing."""
        if self._pending:
            self._pending = False
            raise KeyboardInterrupt
        self._live = True
        try:
            return next(chunks, None)
        finally:
            self._live = False

    def _interrupt(self, signum: int, frame: FrameType | None) -> None:
        if self._live:
            raise KeyboardInterrupt
        self._pending = True
