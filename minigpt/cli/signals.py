"""Stopping a training run cleanly on Ctrl-C or SIGTERM.

The first signal asks the loop to stop after the current step, which then saves a
checkpoint; a second one interrupts at once (a save it cuts short leaves the previous
checkpoint, because snapshots are swapped in atomically).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
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

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested is not None:
            raise KeyboardInterrupt
        self.requested = signal.Signals(signum).name
        self.notify(
            f"{self.requested}: stopping after this step and saving a checkpoint "
            "(press Ctrl-C again to stop at once, keeping the previous checkpoint)"
        )
