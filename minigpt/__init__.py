"""minigpt: train a small GPT on your own text and talk to it.

The public API is below; `minigpt --help` is the command line. The package map, one
line a module; imports flow one way, from the command line to the features to the
core, never back:

core
  config        typed settings (model shape, data, training, sampling), each field
                declaring its default, help and flag once
  presets       named model shapes (`--preset`) and block styles (GPT-2's, modern)
  schema        JSON type checks of those fields, from_dict, the `setting` declaration
  model         positions, attention, MLP, Block, GPT, the KV cache
  checkpoint    snapshots: safetensors + JSON, written atomically, read once and checked
  device        device, CPU threads, autocast precision, torch.compile choice, matmul peak
  tuning        speed choices by measurement: timing candidates, the per-machine cache
  errors        the errors a user can cause, each one line
  fileio        atomic writes, directory swaps, bounded JSON reads, locks, hashes; the
                PathLike (str or os.PathLike) every public function takes for a path
  tokenizer/    encodings (char, own BPE, tiktoken), bpe (learning merges), files,
                pieces (how each token reads: characters, or bytes like <EC><96>)
features
  data/         corpus (reading text in bounded memory), documents (a directory of
                text files as one corpus), dataset (dataset directories), cache (the
                train-time dataset cache), batches, download
  training/     trainer (the loop), setup, precision (--precision auto, measured),
                step, evaluate, checkpointer, state,
                metrics (metrics.jsonl), tensorboard (its rows as event files), runs
                (which run a text resumes; a run never saved), reporting, sizing (the
                small-data warning and its advice), optim, distributed, plot
  generation/   sampling (pure logit filters), context (KV cache + window), generate
                (the one path: ids -> steps -> text), text (UTF-8 and stop strings),
                utf8 (which tokens keep the bytes UTF-8), inference (the matmul path,
                measured), memory (what a generation needs, what is free), transcript,
                chat (the session)
  convert/      Hugging Face GPT-2 and Llama layouts (common, gpt2, llama)
command line
  cli/          app (registers the commands), settings (options from config fields),
                options (what commands share: --threads), terminal, tokens (the token
                view), probs (--show-probs), one module per command, run_dirs (a run's
                directory for train), dashboard, launch, signals; chat's parts:
                chat_commands (slash commands), chat_words (/stats in words),
                reply_terminal (no echo, Ctrl-C between chunks while a reply streams)

`import minigpt` is cheap: each public name below is imported on first use (PEP 562),
so the command line is in charge from its first moment (`minigpt.__main__`), not after
a second of loading torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from minigpt.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
    from minigpt.config import DataConfig, GPTConfig, SampleConfig, TrainConfig
    from minigpt.errors import MinigptError
    from minigpt.generation.generate import generate
    from minigpt.generation.sampling import sample_next_token
    from minigpt.kvcache import KVCache
    from minigpt.model import GPT
    from minigpt.parameters import count_parameters
    from minigpt.tokenizer.encodings import Tokenizer
    from minigpt.tokenizer.files import load_tokenizer, train_tokenizer
    from minigpt.training.trainer import train

_HOMES = {  # each public name and the module it lives in
    "Checkpoint": "checkpoint", "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint", "DataConfig": "config", "GPTConfig": "config",
    "SampleConfig": "config", "TrainConfig": "config", "MinigptError": "errors",
    "generate": "generation.generate", "sample_next_token": "generation.sampling",
    "GPT": "model", "KVCache": "kvcache", "count_parameters": "parameters",
    "Tokenizer": "tokenizer.encodings", "load_tokenizer": "tokenizer.files",
    "train_tokenizer": "tokenizer.files", "train": "training.trainer",
}  # fmt: skip

__all__ = [
    "GPT",
    "Checkpoint",
    "DataConfig",
    "GPTConfig",
    "KVCache",
    "MinigptError",
    "SampleConfig",
    "Tokenizer",
    "TrainConfig",
    "count_parameters",
    "generate",
    "load_checkpoint",
    "load_tokenizer",
    "sample_next_token",
    "save_checkpoint",
    "train",
    "train_tokenizer",
]


def __getattr__(name: str) -> object:
    """A public name, imported from its module on first use."""
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module 'minigpt' has no attribute {name!r}")
    return getattr(import_module(f"minigpt.{home}"), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_HOMES))
