"""`minigpt chat`: an interactive REPL over a `ChatSession`.

All terminal work lives here: line editing and history (readline), multi-line input
(end a line with a backslash to go on), slash commands, streaming replies, Ctrl-C.
Ctrl-C during a reply stops it and keeps what was printed; Ctrl-C or Ctrl-D at an
empty prompt leaves. With stdin from a pipe, each line is one turn and only the
replies are printed.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from minigpt.cli import options as opts
from minigpt.cli.settings import option
from minigpt.cli.terminal import stderr, stdin_for, user_text, visible_controls
from minigpt.config import SampleConfig
from minigpt.errors import ConfigError, MinigptError
from minigpt.generation.chat import ChatSession, chat_stop
from minigpt.generation.generate import Chunk

PROMPT = "you> "
MORE = "...> "
HELP = """commands:
  /temp X        temperature (0 = greedy)      /topk N|off   keep the k likeliest
  /topp X|off    nucleus mass                  /minp X|off   min-p floor
  /seed N        restart the random stream     /max N        tokens per reply
  /regen         a new reply to the last turn  /undo         drop the last exchange
  /reset         forget the conversation       /stats        context, speed, settings
  /save FILE     transcript as JSON            /load FILE    a saved transcript
  /probs on|off  colour tokens by probability  /quit         leave (or Ctrl-D)
A line ending in \\ continues on the next line. Ctrl-C stops a reply."""


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
    root: opts.RootOpt = Path("checkpoints"),
) -> None:
    """Talk to a trained model. A base model continues your text until a blank line
    (change it with --stop, drop it with --no-stop); /help lists the commands."""
    if config.stop and no_stop:
        raise ConfigError("give --stop or --no-stop, not both")
    interactive = stdin_for("chat reads your turns from it").isatty()
    pinned = opts.unescape(user_text(pin, "--pin"))
    ckpt, compute = opts.load_for_generation(checkpoint, root, device, threads)
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


class Repl:
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
        self.commands: dict[str, Callable[[str], bool]] = {
            "help": self.help, "regen": self.regen, "undo": self.undo, "reset": self.reset,
            "save": self.save, "load": self.load, "stats": self.stats,
            "probs": self.set_probs, "quit": self.quit, "exit": self.quit,
        }  # fmt: skip
        for name, setting in SETTINGS.items():
            self.commands[name] = partial(self.setting, setting)

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

    def error(self, message: str) -> None:
        self.err.print(Text(f"error: {message}", style="red"))

    def read(self) -> str:
        """One turn, from the terminal or from piped stdin."""
        return read_turn(input if self.interactive else read_piped, self.out, self.err)

    def stream(self, chunks: Iterator[Chunk]) -> None:
        """Print a reply as it comes; Ctrl-C stops it, keeping what was printed."""
        try:
            for chunk in chunks:
                style = opts.probability_style(chunk.prob) if self.probs else ""
                if self.raw and not style:  # rich would drop BEL, CR, ...
                    self.out.file.write(chunk.text)
                    self.out.file.flush()
                    continue
                text = visible_controls(chunk.text) if self.out.is_terminal else chunk.text
                self.out.print(Text(text, style=style), end="")
        except KeyboardInterrupt:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()  # the session records the reply as printed so far
            self.out.print()
            self.err.print(Text("(reply stopped)", style="dim"))
        else:
            self.out.print()
        for notice in self.session.take_notices():
            self.err.print(Text(f"note: {notice}", style="dim"))

    # -- slash commands: each returns False to leave ---------------------------

    def command(self, line: str) -> bool:
        name, _, arg = line[1:].strip().partition(" ")
        handler = self.commands.get(name.lower())
        if handler is None:
            self.error(f"unknown command /{name}; /help lists them")
            return True
        return handler(arg.strip())

    def help(self, arg: str) -> bool:
        self.out.print(Text(HELP))
        return True

    def setting(self, setting: Setting, arg: str) -> bool:
        """/temp, /topk, ...: change one sampling setting and say its new value."""
        parse = parse_optional if setting.can_be_off else parse_number
        self.session.set(**{setting.field: parse(arg, setting.kind, setting.usage)})
        value = getattr(self.session.config, setting.field)
        if setting.can_be_off:
            value = value or "off"
        return self.told(setting.told.format(value))

    def regen(self, arg: str) -> bool:
        self.stream(self.session.regenerate())
        return True

    def undo(self, arg: str) -> bool:
        n = self.session.transcript.undo()
        return self.told(f"removed {n} turn(s)" if n else "nothing to undo")

    def reset(self, arg: str) -> bool:
        self.session.transcript.reset()
        return self.told("conversation cleared")

    def save(self, arg: str) -> bool:
        self.session.save(Path(need(arg, "/save chat.json")))
        return self.told(f"saved {len(self.session.transcript.turns)} turns to {arg}")

    def load(self, arg: str) -> bool:
        self.session.load(Path(need(arg, "/load chat.json")))
        return self.told(f"loaded {len(self.session.transcript.turns)} turns from {arg}")

    def stats(self, arg: str) -> bool:
        self.out.print(Text(stats_text(self.session, self.compute)))
        return True

    def set_probs(self, arg: str) -> bool:
        if arg not in ("on", "off"):
            raise opts_error("/probs on or /probs off")
        self.probs = arg == "on"
        return self.told(f"probabilities {arg}")

    def quit(self, arg: str) -> bool:
        return False

    def told(self, message: str) -> bool:
        self.err.print(Text(message, style="dim"))
        return True


@dataclass(frozen=True)
class Setting:
    """A slash command that changes one sampling setting."""

    field: str  # the SampleConfig field
    kind: type  # int or float
    usage: str
    told: str  # what is said after the change, "{}" for the new value
    can_be_off: bool = False  # "off" sets it to None


SETTINGS = {
    "temp": Setting("temperature", float, "/temp 0.8", "temperature {}"),
    "topk": Setting("top_k", int, "/topk 40 or /topk off", "top-k {}", can_be_off=True),
    "topp": Setting("top_p", float, "/topp 0.9 or /topp off", "top-p {}", can_be_off=True),
    "minp": Setting("min_p", float, "/minp 0.05 or /minp off", "min-p {}", can_be_off=True),
    "seed": Setting("seed", int, "/seed 42", "seed {}"),
    "max": Setting("max_new_tokens", int, "/max 200", "up to {} tokens per reply"),
}


def stats_text(s: ChatSession, compute: opts.Compute) -> str:
    """/stats: the context, the last reply, the settings."""
    last, t, c = s.last, s.transcript, s.config
    lines = [
        f"turns {len(t.turns)} ({t.start} slid out), {len(t.context_ids())} tokens in "
        f"view, {s.model.config.block_size}-token window, cache holds {s.context.length}",
        f"last reply: {last.tokens} tokens, {last.tokens_per_s:.1f} tokens/s, first "
        f"token after {last.first_token_s * 1000:.0f} ms, {last.prefilled} tokens "
        f"prefilled, ended by {last.ended or '-'}",
        f"temperature {c.temperature}, top-k {c.top_k or 'off'}, top-p "
        f"{c.top_p or 'off'}, min-p {c.min_p or 'off'}, max {c.max_new_tokens}, "
        f"seed {c.seed}, stop {list(c.stop) or 'none'}, {compute}",
    ]
    return "\n".join(lines)


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


def opts_error(usage: str) -> MinigptError:
    return ConfigError(f"usage: {usage}")


def need(arg: str, usage: str) -> str:
    if not arg:
        raise opts_error(usage)
    return arg


def parse_number(arg: str, kind: type, usage: str) -> int | float:
    try:
        return kind(need(arg, usage))
    except ValueError as e:
        raise opts_error(usage) from e


def parse_optional(arg: str, kind: type, usage: str) -> int | float | None:
    return None if arg == "off" else parse_number(arg, kind, usage)


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
