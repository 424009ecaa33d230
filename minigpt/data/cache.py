"""The cache of tokenized datasets that `minigpt train FILE.txt` (or a directory of
text files) builds and reuses.

An entry is a dataset directory named by hashes only: of the text's bytes (for a
directory, of every document's path and bytes: `minigpt.data.documents`) and of the
tokenizer settings (never of the user's file name, which may be long or not UTF-8).
The hash in an entry's name is the hash of the bytes that entry was built from: the
build hashes what it reads, and every lookup compares the hash meta.json records with
the one asked for, so a file edited while it was read can never leave the old content's
entry holding the new text. Builders of one entry take an OS lock on it: the second
waits and reuses the first's result instead of racing it.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass, replace
from pathlib import Path

from minigpt.config import DataConfig
from minigpt.data.dataset import Dataset, build_dataset, check_text_file, load_dataset
from minigpt.data.documents import directory_sha256
from minigpt.errors import MinigptError
from minigpt.fileio import (
    PathLike,
    file_sha256,
    hidden_name,
    locked,
    make_temp_dir,
    swap_dir_into_place,
)
from minigpt.schema import to_dict
from minigpt.tokenizer.encodings import Tokenizer


@dataclass(frozen=True)
class Recipe:
    """How text becomes an entry: the data settings and, for `--tokenizer init-from`,
    the given tokenizer (that of the model a run starts from)."""

    config: DataConfig
    tokenizer: Tokenizer | None = None

    def key(self, content_sha256: str) -> str:
        """Content hash of the text + hash of the settings (and of the given tokenizer)."""
        fields = to_dict(self.config)
        if self.tokenizer is not None:
            fields["tokenizer_spec"] = self.tokenizer.spec()
        settings = json.dumps(fields, sort_keys=True).encode()
        return f"{content_sha256[:16]}-{hashlib.sha256(settings).hexdigest()[:8]}"

    def made(self, meta: dict[str, object]) -> bool:
        """Whether a dataset's meta says it was built by this recipe."""
        same_tokenizer = self.tokenizer is None or meta.get("tokenizer") == self.tokenizer.spec()
        return meta.get("data_config") == to_dict(self.config) and same_tokenizer


def display_name(path: Path) -> str:
    """The file's name as printable text: bytes that are not UTF-8, and control
    characters, as backslash escapes."""
    name = path.name if path.name not in ("", "..") else path.resolve().name  # "." has none
    text = name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode() for c in text)


def source_path(path: Path) -> str:
    """The file's absolute path as text, the same each time (bytes that are not UTF-8
    as backslash escapes): how a run remembers which file it was trained on."""
    text = str(path.resolve())
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def text_sha256(path: Path) -> str:
    """The sha256 a dataset records for a text file, or for a directory of text files."""
    return directory_sha256(path) if path.is_dir() else file_sha256(check_text_file(path))


def prepare_dataset(
    text_path: PathLike,
    data_config: DataConfig,
    cache_root: PathLike,
    tokenizer: Tokenizer | None = None,
) -> Dataset:
    """The cached dataset of a text file or directory (opened), built if it is not there
    yet. Its meta names this file (`source`, `source_path`): an entry is shared by every file
    of the same content, whichever built it. `tokenizer`: the one `--tokenizer init-from`
    tokenizes with."""
    text_path, cache_root = Path(text_path), Path(cache_root)
    dataset = _cached_or_built(text_path, Recipe(data_config, tokenizer), cache_root)
    named = {"source": display_name(text_path), "source_path": source_path(text_path)}
    return replace(dataset, meta={**dataset.meta, **named})


def _cached_or_built(text_path: Path, recipe: Recipe, cache_root: Path) -> Dataset:
    sha = text_sha256(text_path)
    with locked(_lock_file(cache_root, recipe.key(sha))):
        found = cached_dataset(cache_root, sha, recipe)
        if found is not None:
            return found
        staging = make_temp_dir(cache_root / "entry")
        try:
            built = staging / "dataset"
            meta = build_dataset(
                text_path, recipe.config, built, source=display_name(text_path),
                tokenizer=recipe.tokenizer,
            )  # fmt: skip
            if meta["source_sha256"] == sha:
                return _install(built, cache_root, recipe.key(sha))
            # The file changed after it was hashed: file what was read under its own key.
            read_sha = meta["source_sha256"]
            with locked(_lock_file(cache_root, recipe.key(read_sha))):
                found = cached_dataset(cache_root, read_sha, recipe)
                return found or _install(built, cache_root, recipe.key(read_sha))
        finally:
            shutil.rmtree(staging, ignore_errors=True)


def cached_dataset(cache_root: Path, sha: str, recipe: Recipe) -> Dataset | None:
    """The entry for text of this sha256 and this recipe, if it is there, whole, and
    recorded as built from exactly that text that way."""
    entry = cache_root / recipe.key(sha)
    if not (entry / "meta.json").is_file():
        return None
    try:
        dataset = load_dataset(entry)
    except MinigptError:
        return None  # a damaged entry is rebuilt
    if dataset.meta.get("source_sha256") != sha or not recipe.made(dataset.meta):
        return None  # not what its name says: rebuilt
    return dataset


def _install(built: Path, cache_root: Path, key: str) -> Dataset:
    swap_dir_into_place(built, cache_root / key)
    return load_dataset(cache_root / key)


def _lock_file(cache_root: Path, key: str) -> Path:
    return hidden_name(cache_root / key, "lock")
