"""`--help`: every option of every command shows its default, short flags mean one
thing across commands, and `--version` answers."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest
import typer

from minigpt.cli import main
from minigpt.cli.app import build_app

COMMANDS = ("download", "tokenize", "train", "sample", "chat", "plot")


def command_options() -> list[tuple[str, Any]]:
    """(command, option) for every option of every command, --help aside (the click
    objects typer builds; typer may ship its own copy of click, so no isinstance)."""
    group = typer.main.get_command(build_app())
    found = []
    for name in COMMANDS:
        command = group.commands[name]  # type: ignore[attr-defined]
        found += [(name, p) for p in command.params
                  if p.param_type_name == "option" and "--help" not in p.opts]  # fmt: skip
    return found


def test_every_option_declares_its_default() -> None:
    missing = [f"{name} {p.opts[0]}" for name, p in command_options()
               if "[default: " not in (p.help or "")]  # fmt: skip
    assert not missing, missing


@pytest.mark.parametrize("command", COMMANDS)
def test_help_shows_every_default_in_a_256_colour_terminal(command: str) -> None:
    """Rich used to read "[bpe]" as markup and drop it; the defaults must reach the screen."""
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "80", "FORCE_COLOR": "1"}
    done = subprocess.run([sys.executable, "-m", "minigpt", command, "--help"], env=env,
                          capture_output=True, text=True, timeout=120, check=True)  # fmt: skip
    shown = re.sub(r"\x1b\[[0-9;]*m|[│╭╮╰╯─]", "", done.stdout)
    flat = " ".join(shown.split())
    expected = [name for name, _ in command_options() if name == command]
    assert flat.count("[default: ") >= len(expected)  # arguments may show theirs too
    options = flat[flat.index(" Options ") :].replace("--help -h <bool>", "")
    assert not re.search(r"<(bool|str|int|float|path)>", options), options
    assert "(" + "bpe)" not in flat


def test_a_short_flag_means_one_thing_everywhere() -> None:
    meaning: dict[str, set[str]] = {}
    for _, p in command_options():
        for short in (o for o in p.opts if not o.startswith("--")):
            meaning.setdefault(short, set()).add(p.opts[0] if p.opts[0].startswith("--")
                                                 else p.opts[-1])  # fmt: skip
    assert all(len(longs) == 1 for longs in meaning.values()), meaning


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert re.fullmatch(r"minigpt \d+\.\d+\.\d+\S*\n", capsys.readouterr().out)


@pytest.mark.parametrize(
    "args, expected",
    [(["train", "x.txt", "--pos", "absolute"], "--pos 'absolute' is not one of learned, "),
     (["train", "x.txt", "--norm", "batch"], "--norm 'batch' is not one of layernorm, rmsnorm"),
     (["train", "x.txt", "--mlp", "relu"], "--mlp 'relu' is not one of gelu, swiglu"),
     (["train", "x.txt", "--schedule", "step"], "--schedule 'step' is not one of cosine, wsd"),
     (["train", "x.txt", "--precision", "int8"], "--precision 'int8' is not one of auto, fp32"),
     (["train", "x.txt", "--compile", "yes"], "--compile 'yes' is not one of auto, on, off")],
)  # fmt: skip
def test_a_bad_choice_names_the_flag_and_the_choices(
    args: list[str], expected: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(args) != 0
    err = capsys.readouterr().err
    assert expected in err and len(err.strip().splitlines()) == 1
