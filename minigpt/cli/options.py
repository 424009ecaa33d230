"""Options that `minigpt sample` and `minigpt chat` share, and the model loading they share."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

from minigpt.checkpoint import Checkpoint, find_latest_checkpoint, load_checkpoint
from minigpt.cli.settings import Convert, option, with_settings
from minigpt.cli.terminal import user_text
from minigpt.config import SampleConfig
from minigpt.device import choose_device
from minigpt.generation.inference import prepare_for_inference

F = TypeVar("F", bound=Callable[..., Any])

CheckpointOpt = Annotated[
    Path | None,
    option("Checkpoint or run directory.", "--checkpoint", "-c", default="the newest",
           metavar="RUN"),
]  # fmt: skip
RootOpt = Annotated[
    Path,
    option("Where to look for the newest checkpoint.", "--checkpoints", default="checkpoints",
           metavar="DIR"),
]  # fmt: skip
DeviceOpt = Annotated[
    str, option("auto, cpu, cuda or mps.", "--device", default="auto", metavar="NAME")
]
RawOpt = Annotated[
    bool,
    option("Write the model's text as it is, control characters included, even on a "
           "terminal (where escape sequences then act: retitle, clear, recolour).", "--raw",
           default="off: on a terminal they show as symbols such as ␛"),
]  # fmt: skip
CHAT_MAX_NEW_TOKENS = 200  # a reply is shorter than a sample


def sampling_settings(chat: bool = False) -> Callable[[F], F]:
    """The sampling options of `sample` and `chat`, declared once (by SampleConfig's
    fields): the command gets them as its `config` parameter. A chat reply has its own
    length default and no --num-samples."""
    if chat:
        return with_settings(
            "config", SampleConfig, exclude=("num_samples",), converters={"stop": STOPS},
            defaults={"max_new_tokens": CHAT_MAX_NEW_TOKENS},
        )  # fmt: skip
    return with_settings("config", SampleConfig, converters={"stop": STOPS})


def load_for_generation(checkpoint: Path | None, root: Path, device: str) -> tuple[Checkpoint, str]:
    """The checkpoint's model on the chosen device, ready to generate, and how its
    matmuls run (see `minigpt.generation.inference`)."""
    dev = choose_device(device)
    ckpt = load_checkpoint(checkpoint or find_latest_checkpoint(root), device=dev)
    return ckpt, prepare_for_inference(ckpt.model)


def matmuls_in_words(matmuls: str) -> str:
    """How the matmuls run (`prepare_for_inference`'s answer), said for a reader; ""
    for PyTorch's default path, which needs no mention."""
    return {"onednn-packed": "fast CPU matmuls (oneDNN)"}.get(matmuls, "")


def probability_style(p: float) -> str:
    """The colour a token with probability p is shown in."""
    return "green" if p >= 0.5 else "yellow" if p >= 0.1 else "red"


def parse_stops(given: list[str]) -> tuple[str, ...]:
    """--stop options, unescaped."""
    return tuple(unescape(user_text(s, "--stop")) for s in given)


STOPS = Convert(list[str] | None, parse_stops)


def unescape(text: str) -> str:
    r"""Stop strings typed on a command line: "\n" and "\t" mean newline and tab."""
    return text.replace("\\n", "\n").replace("\\t", "\t")
