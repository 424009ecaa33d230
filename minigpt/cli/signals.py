"""Stopping cleanly on Ctrl-C or SIGTERM.

A training run: the first signal asks the loop to stop after the current step, which
then saves a checkpoint; a second one interrupts at once (a save it cuts short leaves
the previous checkpoint, because snapshots are swapped in atomically). Any other
command that writes (a download): `terminate_as_interrupt` makes SIGTERM interrupt it
as Ctrl-C does, so its cleanup runs instead of the process vanishing mid-write.
"""

from __future__ import annotations

import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType, TracebackType
from typing import Any

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """A context manager installing the handlers; call it to ask "stop requested?"."""

    def __init__(self, notify: Callable[[str], None]) -> None:
        self.notify = notify
        self.requested: str | None = None
        self._previous: dict[int, Any] = {}

    def __call__(self) -> bool:
        return self.requested is not None

    def __enter__(self) -> GracefulStop:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)

    def request(self, reason: str) -> None:
        """Ask for a stop after this step, as a signal would (a closed output does)."""
        if self.requested is None:
            self.requested = reason

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        self.notify(
            f"{self.requested}: stopping after this step and saving a checkpoint "
            "(press Ctrl-C again to stop at once, keeping the previous checkpoint)"
        )


class ClosedOutputGuard:
    """A Reporter around another that survives its output being closed (`| head`, a log
    reader that quits): the first broken pipe (raised by `cli.terminal`'s consoles, which
    then send stdout nowhere) asks `stop` for a graceful stop (save, then exit, as SIGTERM
    does) and everything after it is dropped."""

    def __init__(self, reporter: Any, stop: GracefulStop) -> None:
        self._reporter = reporter
        self._stop = stop
        self.closed = False

    def __getattr__(self, name: str) -> Callable[..., None]:
        method = getattr(self._reporter, name)

        def guarded(*args: Any) -> None:
            if self.closed:
                return
            try:
                method(*args)
            except BrokenPipeError:
                self.closed = True
                self._stop.request("closed output")  # the console silenced stdout

        return guarded


class Interrupted(Exception):
    """A command stopped by Ctrl-C or SIGTERM, saying what that left: the command line
    prints it as one line and exits with EXIT_INTERRUPTED. (Typer turns a bare
    KeyboardInterrupt into a silent exit.)"""


@contextmanager
def terminate_as_interrupt() -> Iterator[None]:
    """While the block runs, SIGTERM raises KeyboardInterrupt("SIGTERM"), as Ctrl-C
    raises KeyboardInterrupt: `finally` blocks run (a partial file is removed) and the
    command ends as interrupted, where SIGTERM's default would kill it on the spot."""

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
