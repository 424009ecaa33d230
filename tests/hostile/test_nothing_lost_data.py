"""Datasets: never delete what is not ours, recover parked data, one builder per cache entry.

Each test reproduces a failure a red team found (the item number of the "nothing lost"
issue is in its docstring); concurrency tests use real concurrent processes.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from minigpt.config import DataConfig
from minigpt.data import cache as cache_module
from minigpt.data.cache import prepare_dataset
from minigpt.data.dataset import build_dataset, load_dataset
from minigpt.fileio import parked
from tests.hostile.conftest import tree_hashes

CHAR = DataConfig(tokenizer="char")


def make_project(root: Path) -> Path:
    """A user's directory that happens to hold a file named meta.json."""
    root.mkdir()
    (root / "meta.json").write_text(json.dumps({"format_version": 1, "name": "my app"}))
    (root / "important.txt").write_text("do not lose me")
    (root / "sub").mkdir()
    (root / "sub" / "main.py").write_text("print('hello')\n")
    return root


def test_force_never_replaces_a_directory_that_only_looks_like_a_dataset(
    cli, corpus: Path, tmp_path: Path
) -> None:
    """Item 1: a directory with a meta.json is not a dataset, --force or not."""
    proj = make_project(tmp_path / "proj")
    before = tree_hashes(proj)
    outcome = cli("tokenize", corpus, "-t", "char", "--out", proj, "--force")
    assert outcome.one_clear_line
    assert "not a dataset" in outcome.err
    assert tree_hashes(proj) == before


def test_force_never_replaces_a_dataset_holding_files_of_the_user(
    cli, corpus: Path, tmp_path: Path
) -> None:
    """Item 1: a real dataset the user has put a file into is no longer ours alone."""
    ds = tmp_path / "ds"
    assert cli("tokenize", corpus, "-t", "char", "--out", ds).code == 0
    (ds / "notes.txt").write_text("mine")
    before = tree_hashes(ds)
    outcome = cli("tokenize", corpus, "-t", "char", "--out", ds, "--force")
    assert outcome.one_clear_line and "notes.txt" in outcome.err
    assert tree_hashes(ds) == before


def test_force_still_replaces_a_dataset(cli, corpus: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    assert cli("tokenize", corpus, "-t", "char", "--out", ds).code == 0
    assert cli("tokenize", corpus, "-t", "bpe", "--vocab-size", "300", "--out", ds,
               "--force").code == 0  # fmt: skip
    assert load_dataset(ds).tokenizer.kind == "bpe"


def killed_between_renames(ds: Path) -> None:
    """The state a SIGKILL between the two renames of a replace leaves: the complete
    old dataset parked, nothing at its name."""
    os.rename(ds, parked(ds))


def test_a_parked_dataset_is_recovered_by_its_readers(cli, corpus: Path, tmp_path: Path) -> None:
    """Item 3: `train ds` after a kill between the renames finds the data."""
    ds = tmp_path / "ds"
    assert cli("tokenize", corpus, "-t", "char", "--out", ds).code == 0
    before = tree_hashes(ds)
    killed_between_renames(ds)
    assert load_dataset(ds).num_tokens("train") > 0
    assert tree_hashes(ds) == before and not parked(ds).exists()


def test_a_parked_dataset_is_never_deleted_without_force(cli, corpus: Path, tmp_path: Path) -> None:
    """Item 3: a later tokenize without --force refused, the parked data kept."""
    ds = tmp_path / "ds"
    assert cli("tokenize", corpus, "-t", "char", "--out", ds).code == 0
    before = tree_hashes(ds)
    killed_between_renames(ds)
    outcome = cli("tokenize", corpus, "-t", "bpe", "--vocab-size", "300", "--out", ds)
    assert outcome.one_clear_line and "--force" in outcome.err
    assert tree_hashes(ds) == before  # back in place, untouched


def text_of(ds_dir: Path, split: str = "train") -> str:
    ds = load_dataset(ds_dir)
    return ds.tokenizer.decode(np.asarray(ds.splits[split]).tolist())


def test_cache_entries_are_named_by_hashes_only(tmp_path: Path) -> None:
    """Item 14: a legal 240-byte file name, or one that is not UTF-8, is trainable."""
    for name in (b"x" * 236 + b".txt", b"bad\xff.txt"):
        path = Path(os.fsdecode(bytes(tmp_path) + b"/" + name))
        path.write_text("hello world, " * 200)
        ds = prepare_dataset(path, CHAR, tmp_path / "cache")
        assert ds.path.name.isascii() and len(ds.path.name) < 64
        assert ds.meta["source"].isprintable()  # recorded in checkpoints as JSON text


def test_a_cache_entry_holds_the_bytes_its_key_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Item 8: the file edited between the key's hash and the scan cannot poison the
    entry of the old content."""
    path = tmp_path / "input.txt"
    old, new = "old text, " * 300, "NEW TEXT! " * 300
    path.write_text(old)
    old_sha = hashlib.sha256(old.encode()).hexdigest()
    real_hash = cache_module.file_sha256

    def hash_then_edit(p: Path) -> str:
        digest = real_hash(p)
        path.write_text(new)  # the user saves the file just after the hash
        return digest

    monkeypatch.setattr(cache_module, "file_sha256", hash_then_edit)
    first = prepare_dataset(path, CHAR, tmp_path / "cache")
    assert first.meta["source_sha256"] != old_sha  # what was read is the new text
    monkeypatch.setattr(cache_module, "file_sha256", real_hash)
    path.write_text(old)
    again = prepare_dataset(path, CHAR, tmp_path / "cache")
    assert again.meta["source_sha256"] == old_sha
    assert text_of(again.path).startswith("old text")


def test_a_poisoned_cache_entry_is_rebuilt(tmp_path: Path) -> None:
    """Item 8: an entry whose meta.json names other content than its key is not used."""
    path = tmp_path / "input.txt"
    path.write_text("first text. " * 300)
    cache = tmp_path / "cache"
    entry = prepare_dataset(path, CHAR, cache).path
    other = tmp_path / "other.txt"
    other.write_text("other text. " * 300)
    build_dataset(other, CHAR, entry, source="other.txt", replace=True)  # wrong content
    assert text_of(prepare_dataset(path, CHAR, cache).path).startswith("first text")


BUILDER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from minigpt.config import DataConfig
    from minigpt.data.cache import prepare_dataset
    ds = prepare_dataset(Path(sys.argv[1]), DataConfig(tokenizer=sys.argv[3]), Path(sys.argv[2]))
    print(ds.path, ds.num_tokens("train"))
    """
)


def test_concurrent_builders_of_one_cache_entry_all_succeed(tmp_path: Path) -> None:
    """Item 6: several processes preparing the same file at once share one entry."""
    path = tmp_path / "input.txt"
    path.write_text("to be or not to be, that is the question. " * 4000)
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    outputs = set()
    for round_ in range(3):
        cache = tmp_path / f"cache{round_}"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", BUILDER, str(path), str(cache), "char"],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env=env,
            )  # fmt: skip
            for _ in range(6)
        ]
        results = [p.communicate(timeout=300) for p in procs]
        for p, (out, err) in zip(procs, results, strict=True):
            assert p.returncode == 0, err
            outputs.add(out.split()[1])
        entries = [e for e in cache.iterdir() if not e.name.startswith(".")]
        assert len(entries) == 1  # one entry, no leftovers
    assert len(outputs) == 1


def run_cli(*args: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    """`minigpt ARGS` in a process of its own, so a hang fails the test instead of
    stopping the suite."""
    return subprocess.run(
        [sys.executable, "-m", "minigpt", *map(str, args)], cwd=cwd, capture_output=True,
        text=True, timeout=120, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )  # fmt: skip


def fifo_in_place_of(file: Path) -> None:
    file.unlink()
    os.mkfifo(file)


def refused_in_one_line(result: subprocess.CompletedProcess[str]) -> bool:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    return result.returncode != 0 and len(lines) == 1 and "Traceback" not in result.stderr


def test_a_fifo_tokenizer_in_a_checkpoint_is_refused(run_copy: Path, tmp_path: Path) -> None:
    """Item 13: `sample -c` with a FIFO tokenizer.json answers at once."""
    fifo_in_place_of(run_copy / "latest" / "tokenizer.json")
    result = run_cli("sample", "-c", run_copy, "-n", 4, cwd=tmp_path)
    assert refused_in_one_line(result) and "not a regular file" in result.stderr


def test_a_fifo_tokenizer_in_a_dataset_is_refused(cli, corpus: Path, tmp_path: Path) -> None:
    """Item 13: `train DATASET` with a FIFO tokenizer.json answers at once."""
    ds = tmp_path / "ds"
    assert cli("tokenize", corpus, "-t", "char", "--out", ds).code == 0
    fifo_in_place_of(ds / "tokenizer.json")
    result = run_cli("train", ds, "--preset", "tiny", "--max-iters", 2, cwd=tmp_path)
    assert refused_in_one_line(result) and "not a regular file" in result.stderr


def test_a_fifo_config_of_another_run_does_not_stop_a_bare_resume(
    trained_run: Path, corpus: Path, tmp_path: Path
) -> None:
    """Item 13: bare --resume looks through every run; a FIFO config.json among them
    is passed over."""
    runs = tmp_path / "checkpoints"
    shutil.copytree(trained_run, runs / "mine")
    (runs / "odd" / "latest").mkdir(parents=True)
    os.mkfifo(runs / "odd" / "latest" / "config.json")
    result = run_cli("train", corpus, "--resume", "--max-iters", 6, "--out", runs, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
