"""A chat transcript is loaded only by a model that reads its ids as the text it shows
("nothing lost" issue, item 25): real checkpoints, `minigpt chat` with piped stdin."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from minigpt.checkpoint import save_checkpoint
from minigpt.model import GPT
from minigpt.tokenizer.encodings import CharTokenizer
from tests.conftest import tiny_config

ALPHABET = "abcdefghijklmnopqrstuvwxyz ,.!?\n"


def char_checkpoint(root: Path, alphabet: str) -> Path:
    """A random char-level model whose vocabulary is the characters of `alphabet`."""
    tok = CharTokenizer.from_text(alphabet)
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=tok.vocab_size, block_size=64))
    path = root / "latest"
    save_checkpoint(path, model, tok, {"step": 0})
    return path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Two models whose vocabularies differ only in the case of their letters: every id
    of one is a valid id of the other, for another character ("h" is "H")."""
    root = tmp_path_factory.mktemp("models")
    return char_checkpoint(root / "a", ALPHABET), char_checkpoint(root / "b", ALPHABET.upper())


def chat(checkpoint: Path, cwd: Path, lines: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    return subprocess.run(
        [sys.executable, "-m", "minigpt", "chat", "-c", str(checkpoint), "-n", "8"],
        input=lines, capture_output=True, text=True, env=env, cwd=cwd, timeout=120,
    )  # fmt: skip


def test_a_transcript_of_another_tokenizer_is_refused(
    models: tuple[Path, Path], tmp_path: Path
) -> None:
    """Before: model b loaded a's transcript silently, and saw other text than it shows."""
    a, b = models
    saved = chat(a, tmp_path, "hello there\n/save chat.json\n")
    assert saved.returncode == 0 and "saved 2 turns" in saved.stderr, saved.stderr
    loaded = chat(b, tmp_path, "/load chat.json\n/stats\n")
    assert loaded.returncode == 0 and "Traceback" not in loaded.stderr
    errors = [line for line in loaded.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "loaded" not in loaded.stderr, loaded.stderr
    assert errors[0].startswith("error: chat.json was saved with another tokenizer (char, 32 ")
    assert "load it in a chat with the model that saved it" in errors[0]
    assert "no turns yet" in loaded.stdout  # the session was left as it was
    assert "loaded 2 turns" in chat(a, tmp_path, "/load chat.json\n").stderr


def test_an_old_transcript_loads_only_where_its_ids_spell_its_text(
    models: tuple[Path, Path], tmp_path: Path
) -> None:
    """Version 1 recorded no tokenizer: its ids are checked against the text it shows."""
    a, b = models
    assert chat(a, tmp_path, "hello there\n/save chat.json\n").returncode == 0
    data = json.loads((tmp_path / "chat.json").read_text())
    del data["tokenizer"]
    data["version"] = 1
    (tmp_path / "chat.json").write_text(json.dumps(data))
    assert "loaded 2 turns" in chat(a, tmp_path, "/load chat.json\n").stderr
    refused = chat(b, tmp_path, "/load chat.json\n").stderr
    assert "error: chat.json: the token ids of turn 1 do not spell its text" in refused
    assert "loaded" not in refused
