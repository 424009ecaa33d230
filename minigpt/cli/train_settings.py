"""A run's settings as `minigpt train` assembles them: a new run's from a preset, a run
from a model's (`--init-from`) from that model and the fine-tuning defaults, a resumed
run's from its checkpoint; then the options given on the command line."""

from __future__ import annotations

from dataclasses import replace
from typing import Any, NamedTuple

from minigpt.checkpoint import CONFIG, Snapshot
from minigpt.config import INIT_FROM_TOKENIZER, DataConfig, GPTConfig, TrainConfig
from minigpt.device import choose_device
from minigpt.errors import CheckpointError, ConfigError
from minigpt.presets import DEFAULT_PRESET, FINETUNE, GPU_PRESET, preset
from minigpt.training.init_from import Start, start_config


class Settings(NamedTuple):
    """A run's settings from the preset or checkpoint and the options given."""

    data: DataConfig
    model: GPTConfig  # a new run's has no vocab_size until the data is tokenized
    train: TrainConfig


def _given(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}


def _apply_train_options(train_fields: dict[str, Any], given: dict[str, Any]) -> None:
    """Options given replace settings; --max-iters or --time replace both limits."""
    train_fields.update(_given(given))
    if "max_iters" in given:
        train_fields.update(max_iters=given["max_iters"], time_budget=given["time_budget"])


def new_settings(
    preset_name: str | None,
    given_data: dict[str, Any],
    given_model: dict[str, Any],
    given_train: dict[str, Any],
) -> Settings:
    """A new run: the preset (by default the one for the device it trains on), then
    the options given."""
    shape, train_fields = preset(preset_name or default_preset(given_train.get("device")))
    shape.update(_given(given_model))
    _apply_train_options(train_fields, given_train)
    model = GPTConfig(vocab_size=None, **shape)  # checked before tokenizing; vocab after it
    return Settings(DataConfig(**_given(given_data)), model, TrainConfig(**train_fields))


def default_preset(device: str | None) -> str:
    """The shape a new run takes without --preset: a CUDA GPU trains the larger
    `GPU_PRESET` in the time a CPU trains `DEFAULT_PRESET`."""
    return GPU_PRESET if choose_device(device or "auto").type == "cuda" else DEFAULT_PRESET


def start_settings(
    start: Start,
    given_data: dict[str, Any],
    given_model: dict[str, Any],
    given_train: dict[str, Any],
) -> Settings:
    """A run from a model: its shape (a shorter context or other dropout if given), its
    tokenizer, the fine-tuning settings, then the options given. A --schedule given
    decays as that schedule does, to its usual floor."""
    model = start_config(start, _given(given_model))
    train_fields = dict(FINETUNE)
    if given_train.get("schedule") is not None:
        del train_fields["min_lr_ratio"]
    _apply_train_options(train_fields, given_train)
    data = DataConfig(**{**_given(given_data), "tokenizer": INIT_FROM_TOKENIZER})
    return Settings(data, model, TrainConfig(**train_fields))


def resumed_settings(
    snapshot: Snapshot,
    preset_name: str | None,
    given_data: dict[str, Any],
    given_model: dict[str, Any],
    given_train: dict[str, Any],
) -> Settings:
    """A resumed run: the checkpoint's settings, then the options given. A shape that
    differs from the saved one is refused later, by `train`, with the difference."""
    dataset = snapshot.meta.get("dataset")
    saved_data = dataset.get("data_config") if isinstance(dataset, dict) else None
    train_fields = snapshot.meta.get("train")
    if not all(isinstance(d, dict) for d in (saved_data, train_fields)):
        raise CheckpointError(
            f"{snapshot.path / CONFIG} lacks the dataset, model or train settings needed "
            "to resume (each a JSON object)"
        )
    saved_data, train_fields = dict(saved_data), dict(train_fields)
    shape = preset(preset_name)[0] if preset_name is not None else {}
    shape.update(_given(given_model))
    model = replace(snapshot.config, **shape)  # the saved model, complete, with any changes
    saved_data.update(_given(given_data))
    _apply_train_options(train_fields, given_train)
    try:
        return Settings(DataConfig(**saved_data), model, TrainConfig(**train_fields))
    except TypeError as e:
        raise CheckpointError(
            f"{snapshot.path} has settings this minigpt does not know ({e})"
        ) from e


def check_init_from(
    init_from: str | None, resume: str | None, preset_name: str | None, given: dict[str, Any]
) -> None:
    """--init-from starts a new run with the model's own shape and tokenizer."""
    if init_from is None:
        return
    if resume is not None:
        raise ConfigError(
            "--resume continues a run, which already holds its weights; drop --init-from"
        )
    given_flags = {"--preset": preset_name is not None, "--tokenizer": "tokenizer" in given,
                   "--vocab-size": "vocab_size" in given}  # fmt: skip
    clash = [flag for flag, there in given_flags.items() if there]
    if clash:
        raise ConfigError(
            f"--init-from takes the model's shape and tokenizer from {init_from}; "
            f"drop {', '.join(clash)}"
        )
