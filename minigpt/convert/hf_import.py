"""Hugging Face models in, as minigpt snapshots: `minigpt import SOURCE`.

SOURCE is a local model directory (config.json, model.safetensors or a sharded
model.safetensors.index.json, and the tokenizer's files) or a hub name such as
`openai-community/gpt2`, fetched with huggingface_hub (the `hub` extra) into its usual
cache and read from that cache when offline (HF_HUB_OFFLINE=1). Only JSON and
safetensors files are fetched or read: pickle weights (pytorch_model.bin, *.pt, ...) are
refused, never opened.

The architecture must be one minigpt holds exactly (`GPT2LMHeadModel`,
`LlamaForCausalLM`: `minigpt.convert` refuses every setting it cannot represent), and the
tokenizer one minigpt reproduces exactly (`minigpt.tokenizer.hf`).

Memory: tensors are read one at a time and converted to float32 (minigpt's weights
dtype); each source tensor is released once its minigpt tensor is made, and the
snapshot is written tensor by tensor, so the peak stays near one copy of the weights.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError, safe_open

from minigpt.checkpoint import save_snapshot
from minigpt.config import GPTConfig
from minigpt.convert.gpt2 import config_from_gpt2, state_dict_from_gpt2
from minigpt.convert.llama import config_from_llama, state_dict_from_llama
from minigpt.errors import CheckpointError, ConfigError, MissingDependencyError
from minigpt.fileio import load_json_object
from minigpt.tokenizer.encodings import Tokenizer
from minigpt.tokenizer.hf import tokenizer_from_hf

CONFIG = "config.json"
SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
MAX_JSON_BYTES = 64 << 20  # a sharded index of a very large model stays far below
# Weights in pickle formats: never opened (unpickling runs code), named in the refusal.
PICKLE_WEIGHTS = ("pytorch_model.bin", "pytorch_model.bin.index.json", "model.pt", "model.ckpt")
HUB_FILES = ["*.json", "*.safetensors", "*.txt", "*.model"]  # never *.bin, *.pt, *.h5
HUB_NAME = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
ARCHITECTURES = {"GPT2LMHeadModel": "gpt2", "LlamaForCausalLM": "llama"}
TO_SAFETENSORS = (
    "convert it where you trust it: transformers' "
    "AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(OUT) writes model.safetensors"
)


@dataclass(frozen=True)
class HFModel:
    """A model directory read: its minigpt shape, tokenizer and where it came from."""

    directory: Path
    architecture: str  # "gpt2" or "llama"
    config: GPTConfig
    tokenizer: Tokenizer


def resolve_source(source: str) -> Path:
    """The directory of SOURCE: itself, or the hub snapshot of a name (downloaded, or
    from the cache when offline)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ConfigError(f"{source} is a file; give the model's directory (with {CONFIG})")
    if not HUB_NAME.fullmatch(source):
        raise ConfigError(
            f"{source} is neither a directory nor a hub name such as openai-community/gpt2"
        )
    return _hub_snapshot(source)


def _hub_snapshot(name: str) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError
    except ImportError as e:
        raise MissingDependencyError(
            f'importing {name} from the hub needs huggingface_hub: pip install "minigpt[hub]" '
            "(or download the model and give its directory)"
        ) from e
    try:
        return Path(snapshot_download(name, allow_patterns=HUB_FILES))
    except LocalEntryNotFoundError as e:
        raise ConfigError(
            f"{name} is not in the Hugging Face cache and cannot be downloaded now (offline, "
            f"or HF_HUB_OFFLINE=1); download it first with `hf download {name}` on a "
            "machine with the network, or give a local directory"
        ) from e
    except (HfHubHTTPError, OSError, ValueError) as e:
        raise ConfigError(f"cannot fetch {name} from the hub: {e}".splitlines()[0]) from e


def read_hf_model(directory: Path) -> HFModel:
    """The architecture, minigpt shape and tokenizer of a model directory."""
    hf = load_json_object(
        directory / CONFIG,
        MAX_JSON_BYTES,
        ConfigError,
        f"{directory} needs a Hugging Face {CONFIG}",
    )
    architecture = _architecture(hf, directory)
    read = config_from_gpt2 if architecture == "gpt2" else config_from_llama
    return HFModel(directory, architecture, read(hf), tokenizer_from_hf(directory))


def _architecture(hf: dict[str, Any], directory: Path) -> str:
    names = hf.get("architectures") or []
    known = [ARCHITECTURES[n] for n in names if isinstance(n, str) and n in ARCHITECTURES]
    if known:
        return known[0]
    model_type = hf.get("model_type")
    if not names and model_type in ARCHITECTURES.values():
        return str(model_type)
    shown = ", ".join(map(str, names)) or f"model_type {model_type!r}"
    raise ConfigError(
        f"{directory / CONFIG} describes {shown}; minigpt imports "
        f"{' and '.join(ARCHITECTURES)} only"
    )


class SafetensorsWeights(Mapping[str, torch.Tensor]):
    """A directory's safetensors tensors by name, each read from its file (as float32)
    when asked for and not kept: the caller holds the only copy."""

    def __init__(self, directory: Path) -> None:
        self.files = weight_files(directory)

    def __getitem__(self, name: str) -> torch.Tensor:
        file = self.files[name]
        try:
            with safe_open(file, framework="pt") as f:
                tensor = f.get_tensor(name)
        except (SafetensorError, OSError, RuntimeError) as e:
            raise CheckpointError(f"{file} cannot be read ({e}); download it again") from e
        return tensor.float() if tensor.is_floating_point() else tensor

    def __iter__(self) -> Iterator[str]:
        return iter(self.files)

    def __len__(self) -> int:
        return len(self.files)


def weight_files(directory: Path) -> dict[str, Path]:
    """Each tensor's safetensors file: model.safetensors, or the shards of the index.
    Pickle-only directories are refused without opening anything."""
    if (directory / SINGLE).is_file():
        return dict.fromkeys(_tensor_names(directory / SINGLE), directory / SINGLE)
    if (directory / INDEX).is_file():
        return _sharded(directory)
    pickled = [name for name in PICKLE_WEIGHTS if (directory / name).exists()]
    if pickled:
        raise CheckpointError(
            f"{directory} has its weights only as {pickled[0]}, a pickle file minigpt never "
            f"opens (unpickling can run code); {TO_SAFETENSORS}"
        )
    raise CheckpointError(f"{directory} has no {SINGLE} (nor {INDEX}); {TO_SAFETENSORS}")


def _tensor_names(file: Path) -> list[str]:
    try:
        with safe_open(file, framework="pt") as f:
            return list(f.keys())
    except (SafetensorError, OSError) as e:
        raise CheckpointError(
            f"{file} is not a valid safetensors file ({e}); download it again"
        ) from e


def _sharded(directory: Path) -> dict[str, Path]:
    """The index's weight map, every shard a plain file name in the directory and every
    tensor it names present in its shard."""
    index = load_json_object(directory / INDEX, MAX_JSON_BYTES, CheckpointError)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, dict) or not weight_map:
        raise CheckpointError(f"{directory / INDEX} has no weight_map object")
    files: dict[str, Path] = {}
    for shard in set(weight_map.values()):
        if not isinstance(shard, str) or Path(shard).name != shard or shard in ("", ".", ".."):
            raise CheckpointError(f"{directory / INDEX} names a shard outside the directory")
        names = set(_tensor_names(directory / shard))
        for name in (n for n, s in weight_map.items() if s == shard):
            if name not in names:
                raise CheckpointError(f"{directory / shard} lacks tensor {name} of {INDEX}")
            files[name] = directory / shard
    return files


def read_hf_weights(source: str) -> tuple[HFModel, dict[str, torch.Tensor]]:
    """SOURCE's shape, tokenizer and weights as minigpt tensors (float32; a tied
    unembedding is stored once, as wte.weight, as a snapshot holds it)."""
    model = read_hf_model(resolve_source(source))
    convert = state_dict_from_gpt2 if model.architecture == "gpt2" else state_dict_from_llama
    weights = convert(SafetensorsWeights(model.directory), model.config)
    if model.config.tie_embeddings:
        del weights["lm_head.weight"]
    return model, weights


def import_model(source: str, snapshot_dir: Path) -> HFModel:
    """Read SOURCE and write it as a minigpt snapshot at `snapshot_dir`."""
    model, weights = read_hf_weights(source)
    extra = {"step": 0, "imported_from": {"source": source, "architecture": model.architecture}}
    save_snapshot(snapshot_dir, model.config, weights, model.tokenizer, extra)
    return model
