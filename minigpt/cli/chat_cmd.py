"""`minigpt chat`: an interactive REPL over a `ChatSession`.

All terminal work lives here: line editing and history (readline), multi-line input
(end a line with a backslash to go on), slash commands, streaming replies, Ctrl-C.
Ctrl-C during a reply stops it and keeps what was printed; Ctrl-C or Ctrl-D at an
empty prompt leaves; keys typed during a reply are not echoed and are dropped
(`reply_terminal`). With stdin from a pipe, each line is one turn and only the replies
are printed, each followed by a newline and the line END_OF_REPLY, so that a script
can split the output on "\n" + END_OF_REPLY + "\n". What the REPL says about itself
(/stats, restored settings) is worded in `chat_words`.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from minigpt.cli import options as opts
from minigpt.cli.chat_commands import SlashCommands
from minigpt.cli.reply_terminal import ReplyTerminal
from minigpt.cli.settings import option
from minigpt.cli.terminal import stderr, stdin_for, user_text, visible_controls
from minigpt.config import SampleConfig
from minigpt.errors import ConfigError, MinigptError
from minigpt.generation.chat import ChatSession, chat_stop
from minigpt.generation.generate import Chunk

END_OF_REPLY = "<|end of reply|>"  # a line of its own after each reply, in piped mode
PROMPT = "you> "
MORE = "...> "


@opts.sampling_settings(chat=True)
def chat(
    *,
    ctx: typer.Context,
    checkpoint: opts.CheckpointOpt = None,
    config: SampleConfig,
    no_stop: Annotated[
        bool, option("No stop string: replies run to the limit.", "--no-stop", default="off")
    ] = False,
    pin: Annotated[
        str,
        option(
            "Text that always stays first in the context.", "--pin", default="none", metavar="TEXT"
        ),
    ] = "",
    history: Annotated[
        Path | None,
        option(
            "Where to keep the input history.",
            "--history",
            default="~/.minigpt_history",
            metavar="FILE",
        ),
    ] = None,  # fmt: skip
    raw: opts.RawOpt = False,
    device: opts.DeviceOpt = "auto",
    threads: opts.ThreadsOpt = None,
    matmul: opts.MatmulOpt = "auto",
    root: opts.RootOpt = Path("checkpoints"),
) -> None:
    """Talk to a trained model. A base model continues your text until a blank line
    (change it with --stop, drop it with --no-stop); /help lists the commands. With
    stdin from a pipe, each line is a turn, and each reply is followed by a newline
    and the line <|end of reply|>."""
    if config.stop and no_stop:
        raise ConfigError("give --stop or --no-stop, not both")
    interactive = stdin_for("chat reads your turns from it").isatty()
    pinned = opts.unescape(user_text(pin, "--pin"))
    ckpt, compute = opts.load_for_generation(checkpoint, root, device, threads, matmul)
    config = replace(config, stop=chat_stop(ckpt.tokenizer, config.stop, no_stop))
    session = ChatSession(ckpt.model, ckpt.tokenizer, config, pinned=pinned)
    debug = bool(ctx.obj and ctx.obj.get("debug"))
    repl = Repl(session, interactive, compute, debug=debug, raw=raw)
    if not interactive:
        repl.loop()
        return
    stderr().print(
        Text(
            f"chatting with {ckpt.path} ({ckpt.config.block_size}-token context). "
            "/help for commands, Ctrl-D to leave.",
            style="dim",
        )
    )
    with readline_history(repl.readline, history or Path.home() / ".minigpt_history"):
        repl.loop()


class Repl(SlashCommands):
    """Reads turns and commands, streams replies; the session does the rest."""

    def __init__(
        self,
        session: ChatSession,
        interactive: bool,
        compute: opts.Compute,
        debug: bool = False,
        raw: bool = False,
    ) -> None:
        self.session = session
        self.raw = raw  # the reply's control characters as they are, even on a terminal
        self.interactive = interactive
        self.compute = compute
        self.debug = debug
        self.readline = import_readline() if interactive else None
        self.out = Console(highlight=False, soft_wrap=True)
        self.err = stderr()
        self.probs = False
        self.commands = self.command_table()

    def loop(self) -> None:
        while True:
            try:
                text = self.read()
            except EOFError:
                break
            except KeyboardInterrupt:
                if self.readline is not None and self.readline.get_line_buffer():
                    self.out.print()
                    continue  # Ctrl-C on a half-typed line drops the line
                break
            if text.strip() and not self.handle(text):
                break
        if self.interactive:
            self.out.print()

    def handle(self, text: str) -> bool:
        """Run one turn or command; False to leave. Nothing here ends the session."""
        try:
            text = user_text(text, "the line", getattr(sys.stdin, "encoding", None))
            if text.startswith("/"):
                return self.command(text)
            self.stream(self.session.respond(text))
        except MinigptError as e:
            self.error(str(e))
        except OSError as e:  # /save into a missing or read-only directory
            self.error(f"{e.strerror or e}: {e.filename}")
        except KeyboardInterrupt:
            self.error("interrupted")
        except Exception as e:  # a bug: say so in one line, keep the conversation
            if self.debug:
                self.err.print_exception()
            self.error(f"{type(e).__name__}: {e} (a bug in minigpt; --debug shows where)")
        return True

    def read(self) -> str:
        """One turn, from the terminal or from piped stdin."""
        return read_turn(input if self.interactive else read_piped, self.out, self.err)

    def stream(self, chunks: Iterator[Chunk]) -> None:
        """Print a reply as it comes; Ctrl-C stops it, keeping what was printed."""
        shown: list[str] = []
        stdin = sys.stdin.fileno() if self.interactive else None
        with ReplyTerminal(stdin) as terminal:
            try:
                while (chunk := terminal.next_chunk(chunks)) is not None:
                    self.show(chunk)
                    shown.append(chunk.text)
            except KeyboardInterrupt:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()  # the session records the reply as printed so far
                self.session.keep_shown("".join(shown))
                self.out.print()
                self.err.print(Text("(reply stopped)", style="dim"))
            else:
                self.out.print()
            if not self.interactive:
                self.out.print(END_OF_REPLY)
        for notice in self.session.take_notices():
            self.err.print(Text(f"note: {notice}", style="dim"))

    def show(self, chunk: Chunk) -> None:
        """One chunk of a reply: coloured by probability under /probs on; control
        characters as symbols on a terminal, unless --raw."""
        style = opts.probability_style(chunk.prob) if self.probs else ""
        if self.raw and not style:  # rich would drop BEL, CR, ...
            self.out.file.write(chunk.text)
            self.out.file.flush()
            return
        text = visible_controls(chunk.text) if self.out.is_terminal else chunk.text
        self.out.print(Text(text, style=style), end="")


def read_turn(read_line: Callable[[str], str], out: Console, err: Console) -> str:
    """One turn; a line ending in a backslash continues on the next one. Ctrl-C or
    Ctrl-D on a continuation line cancels the whole input."""
    lines: list[str] = []
    prompt = PROMPT
    while True:
        try:
            line = read_line(prompt)
        except (KeyboardInterrupt, EOFError):
            if not lines:
                raise
            out.print()
            err.print(Text("(input cancelled)", style="dim"))
            return ""
        if not line.endswith("\\"):
            lines.append(line)
            return "\n".join(lines)
        lines.append(line[:-1])
        prompt = MORE


def read_piped(prompt: str = "") -> str:
    """One line of piped stdin (no prompt shown), without its line ending; EOFError at
    the end."""
    line = sys.stdin.readline()
    if not line:
        raise EOFError
    return line.rstrip("\r\n")


def import_readline() -> ModuleType | None:
    """readline for line editing and history, where the platform has it."""
    try:
        import readline
    except ImportError:
        return None
    return readline


class readline_history:
    """Load the input history on entry and save it on exit (when readline exists)."""

    def __init__(self, readline: ModuleType | None, path: Path) -> None:
        self.readline = readline
        self.path = path

    def __enter__(self) -> None:
        if self.readline is not None and self.path.is_file():
            try:
                self.readline.read_history_file(self.path)
            except OSError:
                pass  # an unreadable history only costs the old lines

    def __exit__(self, *exc: object) -> None:
        if self.readline is not None:
            try:
                self.readline.set_history_length(1000)
                self.readline.write_history_file(self.path)
            except OSError:
                pass
