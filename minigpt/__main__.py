"""The command line's entry: `python -m minigpt` and the `minigpt` script start here.

Loading torch and the commands takes a second or more, and a Ctrl-C in that time must
end the process as one at any later moment does (`minigpt.cli.main` handles those):
the line "error: interrupted" and exit code 130. A KeyboardInterrupt raised inside
torch's loading would print a traceback through the imports, or even abort the process
from C++ code, so while loading, Ctrl-C ends the process at once instead (there is
nothing to save yet). This module imports nothing heavy (`import minigpt` is cheap).
"""

from __future__ import annotations

import gc
import os
import signal
import sys
from types import FrameType

from minigpt.errors import EXIT_INTERRUPTED

INTERRUPTED = b"error: interrupted\n"


def run() -> int:
    """Load the command line and run it; returns the process exit code."""
    # Only where Ctrl-C would raise KeyboardInterrupt: an ignored SIGINT stays ignored.
    loading = signal.getsignal(signal.SIGINT) is signal.default_int_handler
    if loading:
        signal.signal(signal.SIGINT, _end_now)
    from minigpt.cli import main  # torch, typer, rich: most of the start-up time

    if loading:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        code = main()
    except KeyboardInterrupt:  # one that came just before main's own handling
        _say_interrupted()
        return EXIT_INTERRUPTED
    # What is left is freed by the exit itself: without this, the interpreter's last
    # full collection walks every object torch made (about a second after training).
    gc.freeze()
    return code


def _end_now(signum: int, frame: FrameType | None) -> None:
    """SIGINT while loading: say so and exit, raising nothing through the imports."""
    _say_interrupted()
    os._exit(EXIT_INTERRUPTED)


def _say_interrupted() -> None:
    try:
        os.write(2, INTERRUPTED)  # the descriptor: sys.stderr may be None, or mid-write
    except OSError:
        pass  # stderr is closed: the exit code alone tells


if __name__ == "__main__":
    sys.exit(run())
