"""Every public function that takes a path takes a str as well as a pathlib.Path (or any
os.PathLike): `load_checkpoint("checkpoints/x")` works as a newcomer writes it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch

from minigpt import (
    DataConfig,
    SampleConfig,
    TrainConfig,
    load_checkpoint,
    load_tokenizer,
    save_checkpoint,
    train,
)
from minigpt.checkpoint import find_latest_checkpoint, read_meta, read_snapshot, resolve_snapshot
from minigpt.data.cache import prepare_dataset
from minigpt.data.dataset import build_dataset, is_dataset_dir, load_dataset
from minigpt.data.download import CORPORA, fetch
from minigpt.generation.chat import ChatSession
from minigpt.generation.transcript import read_transcript
from minigpt.tokenizer.files import save_tokenizer
from minigpt.training.metrics import find_metrics, newest_metrics, read_metrics
from minigpt.training.plot import Run, plot_run, plot_runs, run_names
from tests.conftest import SHAKESPEARE, tiny_config

CHAR = DataConfig(tokenizer="char")
TINY_RUN = TrainConfig(max_iters=4, batch_size=2, eval_interval=2, eval_iters=1, log_interval=1,
                       sample_every=0)  # fmt: skip


class Where(os.PathLike):
    """A path type of someone else's: only __fspath__."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __fspath__(self) -> str:
        return str(self.path)


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory, small_text: str) -> Path:
    """A text, its dataset and a trained run, each made through str paths."""
    root = tmp_path_factory.mktemp("str-paths")
    (root / "small.txt").write_text(small_text[:20_000], encoding="utf-8")
    build_dataset(str(root / "small.txt"), CHAR, str(root / "ds"))
    dataset = load_dataset(str(root / "ds"))
    config = tiny_config(vocab_size=dataset.tokenizer.vocab_size)
    train(config, TINY_RUN, dataset, str(root / "runs" / "r"))
    return root


def test_datasets(workdir: Path) -> None:
    assert is_dataset_dir(str(workdir / "ds")) and not is_dataset_dir(str(workdir))
    assert load_dataset(str(workdir / "ds")).path == workdir / "ds"
    cached = prepare_dataset(str(workdir / "small.txt"), CHAR, str(workdir / "cache"))
    assert cached.meta["source"] == "small.txt"
    built = build_dataset(Where(workdir / "small.txt"), CHAR, Where(workdir / "ds2"))
    assert built["source_sha256"] == cached.meta["source_sha256"]


def test_checkpoints(workdir: Path) -> None:
    run = str(workdir / "runs" / "r")
    ckpt = load_checkpoint(run)
    assert ckpt.meta["step"] == 4 and isinstance(ckpt.path, Path)
    assert read_snapshot(run, train_state=True).train_state is not None
    assert resolve_snapshot(run) == workdir / "runs" / "r" / "latest"
    assert read_meta(str(ckpt.path))["step"] == 4
    assert find_latest_checkpoint(str(workdir / "runs")) == ckpt.path
    copy = str(workdir / "copy")
    save_checkpoint(copy, ckpt.model, ckpt.tokenizer, {"step": 4})
    assert torch.equal(load_checkpoint(Where(Path(copy))).model.wte.weight, ckpt.model.wte.weight)


def test_tokenizer_files(workdir: Path) -> None:
    tok = load_tokenizer(str(workdir / "ds" / "tokenizer.json"))
    save_tokenizer(tok, str(workdir / "tok.json"))
    assert load_tokenizer(str(workdir / "tok.json")).spec() == tok.spec()


def test_metrics_and_plots(workdir: Path) -> None:
    run = str(workdir / "runs" / "r")
    assert find_metrics(run) == workdir / "runs" / "r" / "metrics.jsonl"
    assert newest_metrics(str(workdir / "runs")) == find_metrics(run)
    metrics = read_metrics(str(find_metrics(run)))
    assert metrics.steps == [1, 2, 3, 4]
    assert run_names([run, str(workdir / "copy")]) == ["r", "copy"]
    pytest.importorskip("matplotlib")
    assert plot_run(metrics, "r", str(workdir / "one.png")).is_file()
    assert plot_runs([Run("r", metrics)], "r", str(workdir / "all.png")).is_file()


def test_chat_transcripts(workdir: Path) -> None:
    ckpt = load_checkpoint(str(workdir / "runs" / "r"))
    config = SampleConfig(temperature=0.0, max_new_tokens=3)
    session = ChatSession(ckpt.model, ckpt.tokenizer, config)
    list(session.respond("to be"))
    session.save(str(workdir / "chat.json"))
    assert len(read_transcript(str(workdir / "chat.json"), ckpt.tokenizer)) == 2
    again = ChatSession(ckpt.model, ckpt.tokenizer, config)
    again.load(str(workdir / "chat.json"))
    assert again.transcript.turns == session.transcript.turns


def test_download_fetch(tmp_path: Path) -> None:
    local = tmp_path / "copy.txt"
    shutil.copyfile(SHAKESPEARE, local)  # a local source: no network
    dest = str(tmp_path / "data" / "shakespeare.txt")
    assert fetch(CORPORA["shakespeare"], dest, str(local)) == "downloaded"
    assert fetch(CORPORA["shakespeare"], dest, Where(local)) == "present"
