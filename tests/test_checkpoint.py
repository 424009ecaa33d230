"""Checkpoints: save -> load gives the same model, writes are atomic, bad dirs are refused."""

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minigpt.checkpoint import (
    find_latest_checkpoint,
    load_checkpoint,
    resolve_snapshot,
    save_checkpoint,
)
from minigpt.checkpoint import save as ckpt_module
from minigpt.errors import CheckpointError
from minigpt.fileio import file_sha256
from minigpt.model import GPT
from minigpt.tokenizer.encodings import CharTokenizer
from tests.conftest import tiny_config

TOKENIZER = CharTokenizer.from_text("".join(chr(c) for c in range(32, 96)))  # 64 chars


def make_model(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(tiny_config(**overrides)).eval()


def dir_digest(path: Path) -> dict[str, bytes]:
    files = sorted(p for p in path.rglob("*") if p.is_file())
    return {str(p.relative_to(path)): p.read_bytes() for p in files}


@pytest.mark.parametrize("tie", [True, False])
@pytest.mark.parametrize("pos", ["learned", "sinusoidal", "rope"])
def test_save_load_gives_identical_logits(tmp_path: Path, tie: bool, pos: str) -> None:
    model = make_model(tie_embeddings=tie, pos_encoding=pos)
    save_checkpoint(tmp_path / "run" / "latest", model, TOKENIZER, {"step": 3})
    loaded = load_checkpoint(tmp_path / "run")
    idx = torch.randint(0, 64, (2, 32))
    torch.testing.assert_close(loaded.model(idx), model(idx), rtol=0, atol=0)
    assert (loaded.model.lm_head.weight is loaded.model.wte.weight) == tie
    assert loaded.meta["step"] == 3
    assert loaded.tokenizer.spec() == TOKENIZER.spec()


def test_tied_weights_are_stored_once(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "latest", make_model(), TOKENIZER, {})
    names = set(load_file(str(tmp_path / "latest" / "model.safetensors")))
    assert "wte.weight" in names and "lm_head.weight" not in names
    assert not any(n.startswith(("_orig_mod.", "module.")) for n in names)


def test_a_failed_save_leaves_the_previous_snapshot_intact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    snapshot = tmp_path / "latest"
    save_checkpoint(snapshot, make_model(), TOKENIZER, {"step": 1})
    before = dir_digest(tmp_path)

    def fail(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ckpt_module, "write_safetensors", fail)
    with pytest.raises(CheckpointError, match="No space left.*previous checkpoint is intact"):
        save_checkpoint(snapshot, make_model(n_layer=1), TOKENIZER, {"step": 2})
    assert dir_digest(tmp_path) == before  # no temp dirs left behind either


@pytest.mark.parametrize(
    ("target", "error", "message"),
    [
        ("make_temp_dir", PermissionError(13, "Permission denied"), "Permission denied"),
        ("write_synced", OSError(30, "Read-only file system"), "Read-only file system"),
        ("write_synced", KeyboardInterrupt(), None),  # a second Ctrl-C during the save
    ],
)
def test_an_interrupted_or_refused_save_keeps_the_previous_snapshot(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    target: str,
    error: BaseException,
    message: str | None,
) -> None:
    snapshot = tmp_path / "latest"
    save_checkpoint(snapshot, make_model(), TOKENIZER, {"step": 1})
    before = dir_digest(tmp_path)

    def fail(*args, **kwargs):
        raise error

    monkeypatch.setattr(ckpt_module, target, fail)
    expected = CheckpointError if message else KeyboardInterrupt
    with pytest.raises(expected, match=message):
        save_checkpoint(snapshot, make_model(n_layer=1), TOKENIZER, {"step": 2})
    assert dir_digest(tmp_path) == before
    assert load_checkpoint(tmp_path).meta["step"] == 1


def test_a_crash_between_the_renames_is_recovered(tmp_path: Path) -> None:
    """If only the parked old snapshot exists, it is found and the next save succeeds."""
    save_checkpoint(tmp_path / "latest", make_model(), TOKENIZER, {"step": 1})
    (tmp_path / "latest").rename(tmp_path / ".latest.old")
    assert resolve_snapshot(tmp_path).name == ".latest.old"
    save_checkpoint(tmp_path / "latest", make_model(), TOKENIZER, {"step": 2})
    assert load_checkpoint(tmp_path).meta["step"] == 2
    assert not (tmp_path / ".latest.old").exists()


def test_not_a_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(CheckpointError, match="not a minigpt checkpoint"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing")
    with pytest.raises(CheckpointError, match="not a checkpoint directory"):
        load_checkpoint(tmp_path / "notes.txt")


def test_no_checkpoint_under_root(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no checkpoint under"):
        find_latest_checkpoint(tmp_path)


def test_newest_checkpoint_is_found(tmp_path: Path) -> None:
    import os

    save_checkpoint(tmp_path / "a" / "latest", make_model(), TOKENIZER, {"step": 1})
    save_checkpoint(tmp_path / "b" / "latest", make_model(), TOKENIZER, {"step": 2})
    os.utime(tmp_path / "a" / "latest" / "config.json", ns=(1, 1))
    assert find_latest_checkpoint(tmp_path) == tmp_path / "b" / "latest"


def test_weights_from_another_save_are_detected(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "a", make_model(), TOKENIZER, {})
    torch.manual_seed(1)
    save_checkpoint(tmp_path / "b", GPT(tiny_config()), TOKENIZER, {})
    (tmp_path / "b" / "model.safetensors").replace(tmp_path / "a" / "model.safetensors")
    with pytest.raises(CheckpointError, match="not the file this config.json was saved with"):
        load_checkpoint(tmp_path / "a")


# The tensor schema (missing, extra, mis-shaped, wrong dtype, prefixes, NaN/Inf) is
# tested with every violation in tests/hostile/test_checkpoints.py.


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda m: m.update(format_version=99), "format_version"),
        (lambda m: m["model"].update(n_embd=31), "divisible"),
        (lambda m: m["model"].update(n_layer="2"), "wrong type"),
        (lambda m: m["model"].pop("n_head"), "missing"),
        (lambda m: m["model"].update(vocab_size=10), "tokenizer"),
    ],
    ids=["version", "inconsistent", "type", "missing-key", "vocab-smaller"],
)
def test_bad_config_json_is_refused(tmp_path: Path, edit, message: str) -> None:
    save_checkpoint(tmp_path / "s", make_model(), TOKENIZER, {})
    meta = json.loads((tmp_path / "s" / "config.json").read_text())
    edit(meta)
    (tmp_path / "s" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "s")


def test_nan_literal_and_garbage_config_are_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "s", make_model(), TOKENIZER, {})
    config = tmp_path / "s" / "config.json"
    config.write_text(config.read_text().replace('"dropout": 0.0', '"dropout": NaN'))
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path / "s")
    config.write_bytes(b"\x80\x81 not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path / "s")


def test_garbage_weights_file_is_refused(tmp_path: Path) -> None:
    save_checkpoint(tmp_path / "s", make_model(), TOKENIZER, {})
    weights = tmp_path / "s" / "model.safetensors"
    weights.write_bytes(b"\x00" * 7)
    meta = json.loads((tmp_path / "s" / "config.json").read_text())
    meta["weights_sha256"] = file_sha256(weights)
    (tmp_path / "s" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a valid safetensors file"):
        load_checkpoint(tmp_path / "s")
