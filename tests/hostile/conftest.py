"""What the hostile-input tests share: a real small run, file hashes, the CLI in-process."""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from minigpt.cli import main
from tests.conftest import SHAKESPEARE


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    @property
    def one_clear_line(self) -> bool:
        """Refused the way the project refuses: non-zero, one line on stderr, no traceback."""
        lines = [line for line in self.err.strip().splitlines() if line.strip()]
        return self.code != 0 and len(lines) == 1 and "Traceback" not in self.err


@pytest.fixture
def cli(capsys: pytest.CaptureFixture):
    """Run `minigpt ARGS` in this process; returns exit code, stdout and stderr."""

    def run(*args: object) -> Outcome:
        code = main([str(a) for a in args])
        captured = capsys.readouterr()
        return Outcome(code, captured.out, captured.err)

    return run


def tree_hashes(root: Path) -> dict[str, str]:
    """sha256 of every file below root, by relative path (what a failure must not touch)."""
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("corpus") / "small.txt"
    path.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:20_000], encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> Path:
    """A real run directory from `minigpt train` (a few steps of the tiny preset)."""
    out = tmp_path_factory.mktemp("runs")
    args = ["train", corpus, "--preset", "tiny", "--tokenizer", "char", "--max-iters", 4,
            "--eval-interval", 2, "--out", out, "--run", "r"]  # fmt: skip
    code = main([str(a) for a in args])
    assert code == 0
    return out / "r"


@pytest.fixture
def run_copy(trained_run: Path, tmp_path: Path) -> Path:
    """A private copy of the run to damage."""
    dst = tmp_path / "run"
    shutil.copytree(trained_run, dst)
    return dst


def set_recorded_sha(snapshot: Path, file: str = "model.safetensors") -> None:
    """Record the current sha256 of `file` in config.json, so a test reaches the parser
    behind the checksum (as if the stranger had also edited config.json)."""
    config = snapshot / "config.json"
    meta = json.loads(config.read_text())
    meta["weights_sha256"] = hashlib.sha256((snapshot / file).read_bytes()).hexdigest()
    config.write_text(json.dumps(meta))
