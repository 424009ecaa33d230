"""Options that several commands share, and the model loading `sample` and `chat` share.

`--threads` is declared here once for every command that computes with torch (train,
sample, chat, and any later one): the CPU threads of each process, torch's own choice
when not given.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NamedTuple, TypeVar

from minigpt.checkpoint import Checkpoint, find_latest_checkpoint, load_checkpoint
from minigpt.cli.settings import Convert, option, with_settings
from minigpt.cli.terminal import user_text
from minigpt.config import SampleConfig
from minigpt.device import choose_device, set_threads
from minigpt.generation.inference import check_matmul, prepare_for_inference

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
MatmulOpt = Annotated[
    str,
    option("How the CPU runs the model's matrix products while generating: auto (the "
           "fastest measured on this machine, kept in ~/.cache/minigpt), default "
           "(PyTorch's), packed (oneDNN, weights prepacked), bf16 (weights in bf16: "
           "half the bytes, numbers rounded) or int8 (weights in int8, a scale per row: "
           "a quarter of the bytes, rounded more).", "--matmul", default="auto", metavar="NAME"),
]  # fmt: skip
TORCH_THREADS = "torch's choice"


def threads_option(default: str = TORCH_THREADS) -> Any:
    """--threads N: the CPU threads torch computes with (`minigpt.device.set_threads`);
    `default` says what the command does without it."""
    return option(
        "CPU threads torch computes with, per process; fewer than the cores helps on a "
        "busy, shared machine.", "--threads", default=default, metavar="N",
    )  # fmt: skip


ThreadsOpt = Annotated[int | None, threads_option()]
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


MATMUL_WORDS = {"default": "default matmuls", "packed": "oneDNN packed matmuls",
                "bf16": "bf16-weight matmuls", "int8": "int8-weight matmuls"}  # fmt: skip


class Compute(NamedTuple):
    """How a loaded model computes: its matmul path, the CPU threads torch uses, and
    why that path (measured ratios, or "as asked")."""

    matmuls: str  # see `minigpt.generation.inference`: default, packed, bf16 or int8
    threads: int
    why: str = ""

    def __str__(self) -> str:
        """Said for a reader: "oneDNN packed matmuls (measured on this model's decode
        step: ...), 2 threads"."""
        how = MATMUL_WORDS.get(self.matmuls, f"{self.matmuls} matmuls")
        how += f" ({self.why})" if self.why else ""
        return f"{how}, {self.threads} thread{'' if self.threads == 1 else 's'}"


def load_for_generation(
    checkpoint: Path | None,
    root: Path,
    device: str,
    threads: int | None = None,
    matmul: str = "auto",
    batch: int = 1,
) -> tuple[Checkpoint, Compute]:
    """The checkpoint's model on the chosen device with `threads` CPU threads (None:
    torch's choice), its matmuls run the `matmul` way (auto: the fastest at `batch`
    sequences), ready to generate, and how it computes."""
    check_matmul(matmul)
    ckpt, threads_used = load_model(checkpoint, root, device, threads)
    decision = prepare_for_inference(ckpt.model, matmul, batch=batch)
    return ckpt, Compute(decision.choice, threads_used, decision.why)


def load_model(
    checkpoint: Path | None, root: Path, device: str, threads: int | None
) -> tuple[Checkpoint, int]:
    """The checkpoint (the newest under `root` when None) on the chosen device, torch
    computing with `threads` CPU threads (None: torch's choice); and the threads used."""
    threads_used = set_threads(threads)
    ckpt = load_checkpoint(checkpoint or find_latest_checkpoint(root), device=choose_device(device))
    return ckpt, threads_used


PROBABILITY_COLOURS = (("green", 0.5), ("yellow", 0.1))  # at least this likely; else red


def probability_style(p: float) -> str:
    """The colour a token with probability p is shown in."""
    return next((colour for colour, floor in PROBABILITY_COLOURS if p >= floor), "red")


def probability_legend() -> list[tuple[str, str]]:
    """What the colours mean, as (text, style) pieces: "green ≥ 0.5, yellow ≥ 0.1, red
    below"."""
    pieces = [(f"{colour} ≥ {floor}", colour) for colour, floor in PROBABILITY_COLOURS]
    return [*pieces, ("red below", "red")]


def parse_stops(given: list[str]) -> tuple[str, ...]:
    """--stop options, unescaped."""
    return tuple(unescape(user_text(s, "--stop")) for s in given)


STOPS = Convert(list[str] | None, parse_stops)


def unescape(text: str) -> str:
    r"""Stop strings typed on a command line: "\n" and "\t" mean newline and tab."""
    return text.replace("\\n", "\n").replace("\\t", "\t")
