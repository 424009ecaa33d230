"""Text files in, dataset directories out, batches for training.

A dataset directory holds `train.bin` and `val.bin` (flat token ids, uint16 when the
vocabulary fits, else uint32, memmap-able), `meta.json` (format version, tokenizer
spec, token and byte counts per split, source sha256) and `tokenizer.json`.
`minigpt train FILE.txt` builds one on the fly into a cache keyed by the file's
content hash and the tokenizer settings, so a second run starts at once.
"""

from __future__ import annotations

import codecs
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from minigpt.config import DataConfig, to_dict
from minigpt.errors import DataError, MinigptError
from minigpt.fileio import make_temp_dir, swap_dir_into_place, write_synced
from minigpt.tokenizer import Tokenizer, load_tokenizer, save_tokenizer, train_tokenizer

DATASET_FORMAT_VERSION = 1
SPLITS = ("train", "val")


# ---------------------------------------------------------------------------------
# Reading the user's text.


def _missing_file_message(path: Path) -> str:
    hint = "check the path"
    if path.name == "shakespeare.txt":
        hint = "get it with `minigpt download shakespeare`"
    return f"{path} does not exist; {hint}"


def read_text_bytes(path: Path) -> bytes:
    """The raw bytes of an input file, with a clear error when it cannot be read."""
    if not path.exists():
        raise DataError(_missing_file_message(path))
    if path.is_dir():
        raise DataError(f"{path} is a directory; give a text file")
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e


def decode_text(raw: bytes, encoding: str, source: str) -> str:
    """Decode an input file's bytes, refusing empty, binary and mis-encoded input.

    A UTF-8 byte-order mark is dropped. Line endings are kept as they are.
    """
    if not raw:
        raise DataError(f"{source} is empty; give a file with some text in it")
    try:
        codec = codecs.lookup(encoding)
    except LookupError as e:
        raise DataError(f"unknown --encoding {encoding!r}; try utf-8, latin-1 or cp1252") from e
    if not getattr(codec, "_is_text_encoding", True):  # e.g. hex, base64, rot13
        raise DataError(f"--encoding {encoding!r} is not a text encoding; try utf-8 or latin-1")
    wide = codec.name.startswith(("utf-16", "utf-32"))  # their text is full of NUL bytes
    nul = raw.find(b"\x00", 0, 1 << 16)
    if nul >= 0 and not wide:
        raise DataError(
            f"{source} looks like a binary file (NUL byte at offset {nul}); give a text file"
        )
    if codec.name == "utf-8" and raw.startswith(codecs.BOM_UTF8):
        raw = raw[len(codecs.BOM_UTF8) :]
    try:
        text = raw.decode(codec.name)
    except UnicodeDecodeError as e:
        bad = raw[e.start : e.start + 1].hex()
        raise DataError(
            f"{source} is not valid {encoding} (byte 0x{bad} at offset {e.start}); "
            "if the file uses another encoding, pass e.g. --encoding latin-1 or cp1252"
        ) from e
    if not text.strip():
        raise DataError(f"{source} contains only whitespace; give a file with some text in it")
    return text


# ---------------------------------------------------------------------------------
# Building a dataset directory.


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size < 1 << 16 else np.dtype(np.uint32)


def split_text(text: str, val_fraction: float) -> tuple[str, str]:
    """The first (1 - val_fraction) of the characters train, the rest validate."""
    n_train = int(len(text) * (1.0 - val_fraction))
    return text[:n_train], text[n_train:]


def build_dataset(
    raw: bytes,
    data_config: DataConfig,
    out_dir: Path,
    source: str = "text",
    replace: bool = False,
) -> dict[str, Any]:
    """Tokenize a text file's bytes into `out_dir`; return the dataset's meta.

    BPE merges are learned from the training split only; a char vocabulary holds
    every character of the file (nothing is learned, and the validation text must be
    encodable). Everything is written to a temporary sibling directory and renamed
    into place, so a failure leaves no half-written dataset and an existing one
    untouched. An existing `out_dir` is replaced only if it is a dataset and
    `replace` is set.
    """
    out_dir = out_dir.resolve()
    if out_dir.exists() and not (replace and is_dataset_dir(out_dir)):
        what = "dataset" if is_dataset_dir(out_dir) else "file or directory (not a dataset)"
        raise DataError(
            f"{out_dir} already exists as a {what}; choose another --out"
            + (" or pass --force to replace it" if is_dataset_dir(out_dir) else "")
        )
    t0 = time.perf_counter()
    text = decode_text(raw, data_config.encoding, source)
    train_text, val_text = split_text(text, data_config.val_fraction)
    if not train_text or not val_text:
        raise DataError(
            f"{source} is too short ({len(text)} characters) for a validation split of "
            f"{data_config.val_fraction:.0%}; give more text or change --val-fraction"
        )
    tok = tokenizer_for(data_config, text)
    meta: dict[str, Any] = {
        "format_version": DATASET_FORMAT_VERSION,
        "source": source,
        "source_sha256": hashlib.sha256(raw).hexdigest(),
        "data_config": to_dict(data_config),
        "tokenizer": tok.spec(),
        "dtype": token_dtype(tok.vocab_size).name,
    }
    tmp = make_temp_dir(out_dir)
    try:
        for split, part in zip(SPLITS, (train_text, val_text), strict=True):
            ids = np.asarray(tok.encode(part), dtype=token_dtype(tok.vocab_size))
            if ids.size < 2:  # a split needs one input and one target at least
                raise DataError(
                    f"{source} is too short ({len(text)} characters) for a {split} split "
                    f"of {ids.size} token(s); give more text or change --val-fraction"
                )
            write_synced(tmp / f"{split}.bin", ids.tobytes())
            meta[f"{split}_tokens"] = int(ids.size)
            meta[f"{split}_bytes"] = len(part.encode("utf-8"))
        save_tokenizer(tok, tmp / "tokenizer.json")
        meta["seconds"] = round(time.perf_counter() - t0, 3)
        write_synced(tmp / "meta.json", json.dumps(meta, indent=2).encode())
        swap_dir_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def tokenizer_for(data_config: DataConfig, text: str) -> Tokenizer:
    """The dataset's tokenizer: BPE learns from the training split, char sees all text."""
    train_text, _ = split_text(text, data_config.val_fraction)
    source = text if data_config.tokenizer == "char" else train_text
    return train_tokenizer(data_config.tokenizer, source, data_config.tokenizer_vocab_size)


def dataset_cache_key(raw: bytes, data_config: DataConfig) -> str:
    """Content hash of the text + hash of the tokenizer settings."""
    content = hashlib.sha256(raw).hexdigest()[:16]
    settings = json.dumps(to_dict(data_config), sort_keys=True).encode()
    return f"{content}-{hashlib.sha256(settings).hexdigest()[:8]}"


def prepare_dataset(text_path: Path, data_config: DataConfig, cache_root: Path) -> Path:
    """The cached dataset directory for a text file, built if it is not there yet."""
    raw = read_text_bytes(text_path)
    key = dataset_cache_key(raw, data_config)
    out_dir = cache_root / f"{text_path.stem}-{data_config.tokenizer}-{key}"
    if (out_dir / "meta.json").is_file():
        try:
            load_dataset(out_dir)
            return out_dir
        except MinigptError:
            pass  # a damaged cache entry is rebuilt below
    build_dataset(raw, data_config, out_dir, source=text_path.name, replace=True)
    return out_dir


def is_dataset_dir(path: Path) -> bool:
    return path.is_dir() and (path / "meta.json").is_file()


# ---------------------------------------------------------------------------------
# Reading a dataset directory and drawing batches.


@dataclass
class Dataset:
    """A tokenized corpus: train and val token arrays plus the tokenizer."""

    path: Path
    meta: dict[str, Any]
    tokenizer: Tokenizer
    splits: dict[str, np.ndarray]  # split -> flat token ids (memmap)

    def num_tokens(self, split: str) -> int:
        return int(self.splits[split].size)


def load_dataset(path: Path) -> Dataset:
    """Open a dataset directory written by `minigpt tokenize`."""
    if not is_dataset_dir(path):
        raise DataError(f"{path} is not a dataset directory (no meta.json); run minigpt tokenize")
    try:
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as e:
        raise DataError(f"{path / 'meta.json'} is not readable JSON: {e}") from e
    if not isinstance(meta, dict) or meta.get("format_version") != DATASET_FORMAT_VERSION:
        raise DataError(f"{path} has an unknown dataset format; rebuild it with minigpt tokenize")
    tok = load_tokenizer(path / "tokenizer.json")
    if meta.get("tokenizer") != tok.spec():
        raise DataError(f"{path}: tokenizer.json does not match meta.json; rebuild the dataset")
    dtype = token_dtype(tok.vocab_size)
    splits = {}
    for split in SPLITS:
        file = path / f"{split}.bin"
        size = file.stat().st_size if file.is_file() else -1
        expected = meta.get(f"{split}_tokens")
        if not isinstance(expected, int) or size != expected * dtype.itemsize:
            raise DataError(f"{file} is missing or has the wrong size; rebuild the dataset")
        splits[split] = np.memmap(file, dtype=dtype, mode="r") if size else np.zeros(0, dtype)
    return Dataset(path=path, meta=meta, tokenizer=tok, splits=splits)


def check_context_fits(dataset: Dataset, block_size: int) -> None:
    """Both splits need at least one full window of block_size + 1 tokens."""
    for split in SPLITS:
        n = dataset.num_tokens(split)
        if n < block_size + 1:
            raise DataError(
                f"the {split} split has {n} tokens, too few for a context of {block_size}; "
                f"use --block-size {max(1, n - 1)} or less, or give more text"
            )


def draw_starts(
    data: np.ndarray, n_batches: int, batch_size: int, block_size: int, gen: torch.Generator
) -> torch.Tensor:
    """Random window starts for n_batches batches, (n_batches, batch_size), in one draw.

    A training step draws all its micro-batches (of every process) at once, so the
    stream of batches depends on the step alone, not on how the step is split up.
    """
    return torch.randint(len(data) - block_size, (n_batches, batch_size), generator=gen)


def batch_at(
    data: np.ndarray, starts: torch.Tensor, block_size: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Inputs x and next-token targets y, each (len(starts), block_size)."""
    return _windows(data, starts.tolist(), block_size)


def get_batch(
    data: np.ndarray, batch_size: int, block_size: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random windows: inputs x and next-token targets y, each (batch_size, block_size)."""
    starts = draw_starts(data, 1, batch_size, block_size, generator)[0]
    return batch_at(data, starts, block_size)


def iter_windows(data: np.ndarray, block_size: int, batch_size: int):
    """Every target of a split exactly once, in consecutive non-overlapping windows.

    Yields batches (x, y), each (b, t); the last, shorter window comes on its own.
    """
    n_targets = len(data) - 1
    n_full = n_targets // block_size
    for first in range(0, n_full, batch_size):
        last = min(first + batch_size, n_full)
        yield _windows(data, [w * block_size for w in range(first, last)], block_size)
    rest = n_targets - n_full * block_size
    if rest:
        yield _windows(data, [n_full * block_size], rest)


def _windows(data: np.ndarray, starts: list[int], length: int) -> tuple[torch.Tensor, torch.Tensor]:
    windows = np.stack([data[s : s + length + 1] for s in starts])  # (b, length + 1)
    w = torch.from_numpy(windows.astype(np.int64))
    return w[:, :-1], w[:, 1:]
