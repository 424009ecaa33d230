"""The command line: the only part of minigpt that prints or reads the terminal.

`main()` runs the Typer app and turns every user error into one line on stderr and a
non-zero exit code; `--debug` (or MINIGPT_DEBUG=1) shows the traceback instead. It
first sets up the standard streams by one rule for every command (closed ones,
encodings that cannot hold the text: see `minigpt.cli.terminal`).
"""

from __future__ import annotations

import os
import sys
import traceback

import torch
from typer import Abort

try:  # recent typer ships its own copy of click
    from typer._click.exceptions import ClickException, UsageError
except ImportError:  # older typer runs on click itself
    from click.exceptions import ClickException, UsageError

from minigpt.cli.app import build_app
from minigpt.cli.launch import expand_bare_resume, launch, split_nproc, under_torchrun
from minigpt.cli.signals import Interrupted
from minigpt.cli.terminal import prepare_streams
from minigpt.errors import EXIT_INTERRUPTED, EXIT_USAGE, EXIT_USER_ERROR, MinigptError

OUT_OF_MEMORY = (
    "out of memory; try a smaller --batch-size, --block-size or model (--grad-accum keeps "
    "the effective batch), or fewer --num-samples when sampling"
)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; returns the process exit code."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("MINIGPT_DEBUG", "") not in ("", "0")
    try:
        prepare_streams()
        args = expand_bare_resume(args)
        if "train" in args and not under_torchrun():
            nproc, rest = split_nproc(args)
            if nproc is not None and nproc > 1:
                return launch(nproc, rest)
        result = build_app()(args=args, prog_name="minigpt", standalone_mode=False)
    except UsageError as e:
        if not e.format_message():  # bare `minigpt`: the help was shown
            return EXIT_USAGE
        command = e.ctx.command_path if e.ctx else "minigpt"
        return _fail(f"{e.format_message()} (see `{command} --help`)", EXIT_USAGE, debug)
    except ClickException as e:
        return _fail(e.format_message(), e.exit_code or EXIT_USER_ERROR, debug)
    except Abort:
        return _fail("aborted", EXIT_INTERRUPTED, debug)
    except KeyboardInterrupt:
        return _fail("interrupted", EXIT_INTERRUPTED, debug)
    except Interrupted as e:
        return _fail(str(e), EXIT_INTERRUPTED, debug)
    except MinigptError as e:
        return _fail(str(e), EXIT_USER_ERROR, debug)
    except (MemoryError, torch.OutOfMemoryError):
        return _fail(OUT_OF_MEMORY, EXIT_USER_ERROR, debug)
    except RuntimeError as e:
        if "out of memory" in str(e).lower() or "can't allocate memory" in str(e).lower():
            return _fail(OUT_OF_MEMORY, EXIT_USER_ERROR, debug)
        raise
    except OSError as e:  # disk full, read-only directory, permissions, ...
        return _fail(f"{e.strerror or e}: {e.filename or ''}".rstrip(": "), EXIT_USER_ERROR, debug)
    return result if isinstance(result, int) else 0


def _fail(message: str, code: int, debug: bool) -> int:
    if debug:
        traceback.print_exc()
    first_line = " ".join(message.split())  # one line, whatever the message held
    print(f"error: {first_line}", file=sys.stderr)  # escapes what stderr cannot hold
    return code
