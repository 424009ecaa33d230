"""One source per setting: command-line options are made from the config fields."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal

import pytest
import typer
from typer.testing import CliRunner

from minigpt.cli.options import CHAT_MAX_NEW_TOKENS
from minigpt.cli.settings import Convert, with_settings
from minigpt.config import DataConfig, GPTConfig, SampleConfig, TrainConfig
from minigpt.schema import setting


@dataclass(frozen=True)
class Toy:
    steps: int = setting(3, "How many steps.", "--steps", "-s")
    rate: float | None = setting(None, "A rate.", "--rate")
    mode: Literal["a", "b"] = setting("a", "The mode.", "--mode")
    loud: bool = setting(False, "Shout.", "--loud/--quiet")
    tags: tuple[str, ...] = setting((), "A tag (repeatable).", "--tag")
    hidden: int = 7  # no flag: not an option


def run(command: Any, *args: str) -> Any:
    app = typer.Typer()
    seen: list[Any] = []
    app.command()(command(seen))
    app.command("other")(lambda: None)  # two commands: the first is addressed by name
    result = CliRunner().invoke(app, [command.__name__, *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return seen[0] if seen else result.output


def built(seen: list[Any]) -> Any:
    @with_settings("toy", Toy, converters={"tags": Convert(list[str], lambda v: tuple(v) * 2)})
    def built(*, name: str = "x", toy: Toy) -> None:
        seen.append((name, toy))

    return built


def given(seen: list[Any]) -> Any:
    @with_settings("toy", Toy, given_only=True, defaults={"steps": 9})
    def given(*, toy: dict[str, Any]) -> None:
        seen.append(toy)

    return given


def test_the_config_is_built_from_its_fields_defaults() -> None:
    assert run(built) == ("x", Toy(tags=()))


def test_options_take_the_fields_flags_and_types() -> None:
    name, toy = run(built, "-s", "5", "--rate", "0.5", "--mode", "b", "--loud", "--tag", "t")
    assert (name, toy) == ("x", Toy(steps=5, rate=0.5, mode="b", loud=True, tags=("t", "t")))


def test_given_only_passes_what_was_given() -> None:
    assert run(given) == {}
    assert run(given, "--quiet", "--tag", "a", "--tag", "b") == {"loud": False, "tags": ("a", "b")}


def test_help_shows_each_fields_help_and_default() -> None:
    text = " ".join(run(built, "--help").split())
    for f in fields(Toy):
        if f.metadata.get("flags"):
            assert f.metadata["help"] in text
    assert "[default: 3]" in text
    assert "--hidden" not in text
    assert "[default: 9]" in " ".join(run(given, "--help").split())  # the override is shown


def test_unknown_names_are_refused() -> None:
    with pytest.raises(TypeError):
        with_settings("toy", Toy, exclude=("nope",))
    with pytest.raises(TypeError):
        with_settings("missing", Toy)(lambda *, toy: None)


@pytest.mark.parametrize(
    ("command", "config"),
    [("sample", SampleConfig), ("chat", SampleConfig), ("tokenize", DataConfig),
     ("train", DataConfig), ("train", GPTConfig), ("train", TrainConfig)],
)  # fmt: skip
def test_every_setting_is_an_option_of_the_commands(command: str, config: type) -> None:
    from minigpt.cli.app import build_app

    result = CliRunner().invoke(build_app(), [command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for f in fields(config):
        flags = f.metadata.get("flags", ())
        if flags and not (command == "chat" and f.name == "num_samples"):
            assert flags[0].split("/")[0] in result.output, (command, f.name)


def test_chat_replies_have_their_own_length_default() -> None:
    from minigpt.cli.app import build_app

    result = CliRunner().invoke(build_app(), ["chat", "--help"], env={"COLUMNS": "200"})
    assert f"[default: {CHAT_MAX_NEW_TOKENS}]" in result.output
    assert "--num-samples" not in result.output


def test_a_model_shape_can_wait_for_its_vocabulary() -> None:
    from dataclasses import replace

    from minigpt.model import GPT

    shape = GPTConfig(vocab_size=None, n_layer=1, n_head=1, n_embd=8, block_size=4)
    with pytest.raises(ValueError, match="vocab_size"):
        GPT(shape)
    assert GPT(replace(shape, vocab_size=11)).lm_head.out_features == 11
