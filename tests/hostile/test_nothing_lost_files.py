"""Files minigpt writes: the user's umask, symbolic links, and temporary files a killed
process left behind ("nothing lost" issue, items 16 and 17)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from minigpt.checkpoint import save_checkpoint
from minigpt.config import DataConfig
from minigpt.data.dataset import build_dataset
from minigpt.fileio import make_temp_dir, temp_prefix, write_atomic
from minigpt.model import GPT
from minigpt.tokenizer import CharTokenizer
from tests.conftest import tiny_config


@pytest.fixture
def umask_022() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_datasets_and_snapshots_follow_the_umask(
    umask_022: None, small_text: str, tmp_path: Path
) -> None:
    """Item 16: datasets and snapshots were 0700; under umask 022 they are 0755 with 0644
    files, as `cp` would make them."""
    ds = tmp_path / "ds"
    build_dataset(small_text.encode(), DataConfig(tokenizer="char"), ds)
    snapshot = tmp_path / "run" / "latest"
    save_checkpoint(snapshot, GPT(tiny_config()), CharTokenizer(list("abc")), {"step": 0})
    for directory in (ds, snapshot):
        assert mode(directory) == 0o755
        assert {mode(f) for f in directory.iterdir()} == {0o644}


def test_a_new_file_follows_the_umask_and_a_replaced_one_keeps_its_mode(
    umask_022: None, tmp_path: Path
) -> None:
    """Item 16: transcripts were 0600; metrics.jsonl flipped 0644 -> 0600 when rewritten."""
    new = tmp_path / "chat.json"
    write_atomic(new, b"{}")
    assert mode(new) == 0o644
    kept = tmp_path / "metrics.jsonl"
    kept.write_bytes(b"")
    kept.chmod(0o640)
    write_atomic(kept, b"{}\n")
    assert mode(kept) == 0o640 and kept.read_bytes() == b"{}\n"


def test_writing_through_a_symbolic_link_writes_its_target(tmp_path: Path) -> None:
    """Item 16: `/save` onto a link replaced the link instead of writing its target."""
    target = tmp_path / "real" / "chat.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "chat.json"
    link.symlink_to(target)
    write_atomic(link, b"new")
    assert link.is_symlink() and target.read_bytes() == b"new"


def dead_pid() -> int:
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return int(proc.stdout)


def test_temporary_files_of_killed_writers_are_cleaned(tmp_path: Path) -> None:
    """Item 17: temp files and directories whose process is gone are removed by the next
    write beside them; a live process's are kept."""
    target = tmp_path / "chat.json"
    stale_file = tmp_path / temp_prefix(target).replace(str(os.getpid()), str(dead_pid()))
    stale_file = stale_file.with_name(stale_file.name + "abc")
    stale_file.write_bytes(b"half")
    live_file = tmp_path / (temp_prefix(target) + "xyz")
    live_file.write_bytes(b"being written")
    write_atomic(target, b"{}")
    assert not stale_file.exists() and live_file.exists()

    entry = tmp_path / "cache" / "entry"
    entry.parent.mkdir()
    stale_dir = entry.parent / (temp_prefix(entry).replace(str(os.getpid()), str(dead_pid())) + "q")
    stale_dir.mkdir()
    (stale_dir / "train.bin").write_bytes(b"\0" * 1000)
    made = make_temp_dir(entry)
    assert not stale_dir.exists() and made.is_dir()
