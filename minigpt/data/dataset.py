"""Text files in, dataset directories out: building, checking and opening them.

A dataset directory holds `train.bin` and `val.bin` (flat token ids, uint16 when the
vocabulary fits, else uint32, memmap-able), `meta.json` (format version, tokenizer
spec, token and byte counts per split, source sha256) and `tokenizer.json`.
`minigpt train FILE.txt` builds one on the fly into a cache keyed by the file's
content hash and the tokenizer settings, so a second run starts at once.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from minigpt.config import INIT_FROM_TOKENIZER, DataConfig
from minigpt.data.corpus import Scan, TextReader
from minigpt.data.documents import DocumentsReader, list_documents, open_corpus
from minigpt.errors import ConfigError, DataError
from minigpt.fileio import (
    PathLike,
    fsync_path,
    load_json_object,
    make_temp_dir,
    recover_parked,
    swap_dir_into_place,
    write_synced,
)
from minigpt.schema import to_dict
from minigpt.tokenizer.encodings import CharTokenizer, Tokenizer
from minigpt.tokenizer.files import load_tokenizer, save_tokenizer, train_tokenizer

DATASET_FORMAT_VERSION = 1
MAX_META_BYTES = 64 * 1024  # a meta.json is under 1 KB; it is copied into checkpoints
# Tokenizers whose pre-tokenization is GPT-2's regex (char tokenizers do not care).
GPT2_PATTERN_TOKENIZERS = ("char", "bpe", "gpt2", "r50k_base", "p50k_base", "p50k_edit")
SPLITS = ("train", "val")
DATASET_FILES = frozenset({"meta.json", "tokenizer.json", "train.bin", "val.bin"})
DATASET_KEYS = frozenset({"format_version", "source_sha256", "data_config", "tokenizer",
                          "train_tokens", "val_tokens"})  # fmt: skip
REBUILD = "rebuild the dataset with minigpt tokenize"


# ---------------------------------------------------------------------------------
# Reading the user's text.


def _missing_file_message(path: Path) -> str:
    hint = "check the path"
    if path.name == "shakespeare.txt":
        hint = "get it with `minigpt download shakespeare`"
    return f"{path} does not exist; {hint}"


def check_text_file(path: Path) -> Path:
    """`path` if it is a readable file, else a DataError saying what to do."""
    if not path.exists():
        raise DataError(_missing_file_message(path))
    if path.is_dir():
        raise DataError(f"{path} is a directory; give a text file")
    if not path.is_file():
        raise DataError(f"{path} is not a regular file (a device or a pipe?); give a text file")
    try:
        with open(path, "rb"):
            return path
    except OSError as e:
        raise DataError(f"cannot read {path}: {e.strerror or e}") from e


def check_corpus(path: Path) -> Path:
    """`path` if it is a readable text file, or a directory with `*.txt` files below it
    and no link leading out of it; else a DataError saying what to do."""
    if path.is_dir():
        list_documents(path)
        return path
    return check_text_file(path)


# ---------------------------------------------------------------------------------
# Building a dataset directory.


def token_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint16) if vocab_size < 1 << 16 else np.dtype(np.uint32)


def build_dataset(
    data: bytes | PathLike,
    data_config: DataConfig,
    out_dir: PathLike,
    source: str = "text",
    replace: bool = False,
    tokenizer: Tokenizer | None = None,
) -> dict[str, Any]:
    """Tokenize a text (bytes; or the path of a file, read in chunks, or of a directory of
    `*.txt` files: see `minigpt.data.documents`) into `out_dir`; return its meta.

    The first (1 - val_fraction) of the characters train, the rest validate. BPE
    merges are learned from the start of the training split (at most
    BPE_TRAIN_CHARS characters); a char vocabulary holds every character of the file.
    Everything is written to a temporary sibling directory and renamed into place, so
    a failure leaves no half-written dataset and an existing one untouched. An existing
    `out_dir` is replaced only if it is a dataset and `replace` is set. `tokenizer`: the
    given tokenizer of `--tokenizer init-from` (that of the model a run starts from).
    """
    out_dir = Path(out_dir).resolve()
    check_replaceable(out_dir, replace)
    t0 = time.perf_counter()
    text = data if isinstance(data, bytes) else Path(data)
    corpus = open_corpus(text, data_config.encoding, source)
    tok, scan, n_train = tokenizer_from_corpus(corpus, data_config, tokenizer)
    meta: dict[str, Any] = {
        "format_version": DATASET_FORMAT_VERSION,
        "source": source,
        "source_sha256": scan.sha256,
        "data_config": to_dict(data_config),
        "tokenizer": tok.spec(),
        "dtype": token_dtype(tok.vocab_size).name,
    }
    if scan.documents:
        meta["documents"] = len(scan.documents)
    tmp = make_temp_dir(out_dir)
    try:
        meta.update(_write_splits(corpus, scan, tok, n_train, tmp))
        save_tokenizer(tok, tmp / "tokenizer.json")
        meta["seconds"] = round(time.perf_counter() - t0, 3)
        write_synced(tmp / "meta.json", json.dumps(meta, indent=2).encode())
        swap_dir_into_place(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return meta


def _write_splits(
    corpus: TextReader | DocumentsReader, scan: Scan, tok: Tokenizer, n_train: int, tmp: Path
) -> dict[str, int]:
    """Encode the corpus segment by segment into tmp/{train,val}.bin; token and byte
    counts. Where a document of several ends, the tokenizer's end-of-text token (0 bytes)."""
    dtype = token_dtype(tok.vocab_size)
    counts = {f"{split}_{what}": 0 for split in SPLITS for what in ("tokens", "bytes")}
    files = {split: open(tmp / f"{split}.bin", "wb") for split in SPLITS}
    try:
        gpt2_cuts = getattr(tok, "name", tok.kind) in GPT2_PATTERN_TOKENIZERS
        for split, text in corpus.segments(scan, n_train, gpt2_cuts=gpt2_cuts):
            ids = np.asarray(_piece_ids(tok, text), dtype=dtype)
            files[split].write(ids.tobytes())
            counts[f"{split}_tokens"] += int(ids.size)
            counts[f"{split}_bytes"] += len((text or "").encode("utf-8"))
    finally:
        for f in files.values():
            f.close()
    for split in SPLITS:
        fsync_path(tmp / f"{split}.bin")
        if counts[f"{split}_tokens"] < 2:  # a split needs one input and one target at least
            raise DataError(
                f"{corpus.source} is too short for a {split} split of "
                f"{counts[f'{split}_tokens']} token(s); give more text or change --val-fraction"
            )
    return counts


def _piece_ids(tok: Tokenizer, text: str | None) -> list[int]:
    """The ids of a piece of the corpus; where a document ends, the end-of-text token if
    the tokenizer has one (a char vocabulary has none: the line break ending it stays)."""
    if text is None:  # END_OF_DOCUMENT
        return [tok.eot_id] if tok.eot_id is not None else []
    return tok.encode(text)


def tokenizer_from_corpus(
    corpus: TextReader | DocumentsReader,
    data_config: DataConfig,
    given: Tokenizer | None = None,
) -> tuple[Tokenizer, Scan, int]:
    """The dataset's tokenizer (BPE learns from the training split, char sees all text,
    init-from is `given`), the corpus scan and the number of training characters."""
    kind = data_config.tokenizer
    if (kind == INIT_FROM_TOKENIZER) != (given is not None):
        raise ConfigError(
            f"--tokenizer {INIT_FROM_TOKENIZER} is the tokenizer of the model a run starts "
            "from: give --init-from MODEL to minigpt train instead"
        )
    scan = corpus.scan(chars=kind == "char", head=kind == "bpe")
    n_train = int(scan.n_chars * (1.0 - data_config.val_fraction))
    if n_train == 0 or n_train == scan.n_chars:
        raise DataError(
            f"{corpus.source} is too short ({scan.n_chars} characters) for a validation split "
            f"of {data_config.val_fraction:.0%}; give more text or change --val-fraction"
        )
    if given is not None:
        return given, scan, n_train
    if kind == "char":
        return CharTokenizer(sorted(scan.chars)), scan, n_train
    source = scan.head[:n_train] if kind == "bpe" else ""
    return train_tokenizer(kind, source, data_config.tokenizer_vocab_size), scan, n_train


def tokenizer_for(data_config: DataConfig, text: str) -> Tokenizer:
    """A tokenizer of the configured kind built from `text` itself (for `--text`)."""
    return train_tokenizer(data_config.tokenizer, text, data_config.tokenizer_vocab_size)


def is_dataset_dir(path: PathLike) -> bool:
    """Whether `path` is meant as a dataset directory (it has a meta.json). A dataset
    that a crash left parked mid-replace is put back first."""
    path = Path(path)
    recover_parked(path)
    return path.is_dir() and (path / "meta.json").is_file()


def check_replaceable(out_dir: Path, replace: bool) -> None:
    """Refuse to write over `out_dir` unless it is missing, or `replace` is set and it is
    verifiably a minigpt dataset holding nothing but a dataset's files."""
    if not is_dataset_dir(out_dir):
        if os.path.lexists(out_dir):
            raise DataError(
                f"{out_dir} already exists and is not a dataset minigpt wrote; choose another --out"
            )
        return
    try:
        meta = _read_meta(out_dir / "meta.json")
    except DataError as e:
        raise DataError(
            f"{out_dir} already exists and is not a dataset minigpt wrote ({e}); "
            "choose another --out"
        ) from e
    if not DATASET_KEYS <= set(meta):
        raise DataError(
            f"{out_dir} already exists and is not a dataset minigpt wrote (its meta.json is not a "
            "dataset's); choose another --out"
        )
    others = sorted(p.name for p in out_dir.iterdir() if p.name not in DATASET_FILES)
    if others:
        raise DataError(
            f"{out_dir} is a minigpt dataset but also holds {', '.join(others[:3])}"
            f"{' ...' if len(others) > 3 else ''}; move those out or choose another --out"
        )
    if not replace:
        raise DataError(
            f"{out_dir} already exists as a dataset; choose another --out or pass --force "
            "to replace it"
        )


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


def load_dataset(path: PathLike) -> Dataset:
    """Open a dataset directory written by `minigpt tokenize`."""
    path = Path(path)
    if not is_dataset_dir(path):
        raise DataError(f"{path} is not a dataset directory (no meta.json); run minigpt tokenize")
    meta = _read_meta(path / "meta.json")
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
        ids = np.memmap(file, dtype=dtype, mode="r") if size else np.zeros(0, dtype)
        if ids.size and int(ids.max()) >= tok.vocab_size:  # one pass; a stranger's file
            raise DataError(
                f"{file} holds token id {int(ids.max())}, outside the tokenizer's "
                f"{tok.vocab_size} ids; rebuild the dataset with minigpt tokenize"
            )
        splits[split] = ids
    return Dataset(path=path, meta=meta, tokenizer=tok, splits=splits)


def _read_meta(file: Path) -> dict[str, Any]:
    """A dataset's meta.json: a small JSON object without NaN, in a known format."""
    meta = load_json_object(file, MAX_META_BYTES, DataError, REBUILD)
    if meta.get("format_version") != DATASET_FORMAT_VERSION:
        raise DataError(f"{file.parent} has an unknown dataset format; {REBUILD}")
    return meta


def check_context_fits(dataset: Dataset, block_size: int) -> None:
    """Both splits need at least one full window of block_size + 1 tokens."""
    fits = min(dataset.num_tokens(split) for split in SPLITS) - 1  # what both splits hold
    for split in SPLITS:
        n = dataset.num_tokens(split)
        if n < block_size + 1:
            raise DataError(
                f"the {split} split has {n} tokens, too few for a context of {block_size}; "
                f"use --block-size {max(1, fits)} or less, or give more text"
            )
