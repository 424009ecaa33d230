"""The chat REPL's slash commands (/temp, /undo, /save, /load, /stats, /probs, ...),
as `SlashCommands`, the base class of `chat_cmd.Repl`: each command is a method that
takes the text after its name and returns False to leave."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from rich.console import Console
from rich.text import Text

from minigpt.cli import options as opts
from minigpt.cli.chat_words import probability_legend_text, settings_words, stats_text
from minigpt.errors import ConfigError, MinigptError
from minigpt.generation.chat import ChatSession
from minigpt.generation.generate import Chunk

HELP = """commands:
  /temp X        temperature (0 = greedy)      /topk N|off   keep the k likeliest
  /topp X|off    nucleus mass                  /minp X|off   min-p floor
  /seed N        restart the random stream     /max N        tokens per reply
  /regen         a new reply to the last turn  /undo         drop the last exchange
  /reset         forget the conversation       /stats        context, speed, settings
  /save FILE     transcript as JSON            /load FILE    a saved transcript
  /probs on|off  colour tokens by probability  /quit         leave (or Ctrl-D)
A line ending in \\ continues on the next line. Ctrl-C stops a reply."""


class SlashCommands:
    """The commands; the REPL provides the session, the consoles and `stream`."""

    session: ChatSession
    compute: opts.Compute
    out: Console
    err: Console
    probs: bool  # colour reply tokens by their probability
    commands: dict[str, Callable[[str], bool]]  # from `command_table`

    def command_table(self) -> dict[str, Callable[[str], bool]]:
        """Each command by its name (without the slash)."""
        commands: dict[str, Callable[[str], bool]] = {
            "help": self.help, "regen": self.regen, "undo": self.undo, "reset": self.reset,
            "save": self.save, "load": self.load, "stats": self.stats,
            "probs": self.set_probs, "quit": self.quit, "exit": self.quit,
        }  # fmt: skip
        for name, setting in SETTINGS.items():
            commands[name] = partial(self.setting, setting)
        return commands

    def stream(self, chunks: Iterator[Chunk]) -> None:
        raise NotImplementedError  # the REPL's

    def error(self, message: str) -> None:
        self.err.print(Text(f"error: {message}", style="red"))

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
        restored = self.session.load(Path(need(arg, "/load chat.json")))
        self.told(f"loaded {len(self.session.transcript.turns)} turns from {arg}")
        if restored is not None:
            self.told(f"restored settings: {settings_words(restored)}")
        return True

    def stats(self, arg: str) -> bool:
        # wrapped at word boundaries on a terminal (soft wrap would let the terminal
        # break words at its edge); whole lines into a pipe
        text = Text(stats_text(self.session, self.compute))
        self.out.print(text, soft_wrap=not self.out.is_terminal)
        return True

    def set_probs(self, arg: str) -> bool:
        if arg not in ("on", "off"):
            raise opts_error("/probs on or /probs off")
        self.probs = arg == "on"
        if self.probs:
            self.err.print(probability_legend_text())
            return True
        return self.told("probabilities off")

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
