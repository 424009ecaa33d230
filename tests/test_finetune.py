"""`minigpt train FILE --init-from SOURCE`: a run starts from the weights of a tiny random
GPT2LMHeadModel or LlamaForCausalLM saved by transformers, or of a minigpt run. Its first
evaluation (step 0) is the source model's own loss on the same batches, computed by
transformers; the loss then falls; an interrupted run resumes exactly; two processes
start from the same weights; everything that cannot hold is one line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from minigpt.checkpoint import load_checkpoint
from minigpt.cli.train_settings import check_init_from
from minigpt.config import INIT_FROM_TOKENIZER, DataConfig
from minigpt.data.batches import get_batch, iter_windows
from minigpt.data.cache import prepare_dataset
from minigpt.data.dataset import build_dataset
from minigpt.errors import ConfigError
from minigpt.training.evaluate import reads_whole_split
from minigpt.training.init_from import load_start, start_config
from tests.conftest import SHAKESPEARE
from tests.test_import import SAVERS

SEED, EVAL_ITERS, BATCH = 1337, 20, 4  # TrainConfig's seed and eval_iters; --batch-size
FAST = [
    "--max-iters", "12", "--eval-interval", "6", "--lr", "1e-3", "--batch-size", str(BATCH),
    "--log-interval", "1", "--sample-every", "0", "--device", "cpu", "--precision", "fp32",
]  # fmt: skip
pytestmark = pytest.mark.usefixtures("quiet_transformers")


def minigpt_train(cwd: Path, *args: str | Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "COLUMNS": "120", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, "-m", "minigpt", "train", *map(str, args)],
        cwd=cwd, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


def trained(cwd: Path, *args: str | Path) -> None:
    done = minigpt_train(cwd, *args)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]


def metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def evals(run: Path) -> list[tuple[int, float]]:
    return [(row["step"], row["val_loss"]) for row in metrics(run) if "val_loss" in row]


def without_time(rows: list[dict]) -> list[dict]:
    skip = ("time", "elapsed", "tokens_per_s", "mfu", "threads")
    return [{k: v for k, v in row.items() if k not in skip} for row in rows]


def eval_batches(run: Path, text: Path, block: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The batches a run's periodic evaluation reads, from its dataset: random ones
    (`estimate_val`), or the whole split's windows when it holds fewer tokens."""
    tok = load_checkpoint(run).tokenizer
    data = DataConfig(tokenizer=INIT_FROM_TOKENIZER)
    val = prepare_dataset(text, data, run.parent.parent / "cache", tok).splits["val"]
    if reads_whole_split(EVAL_ITERS, BATCH, block, len(val)):
        return list(iter_windows(val, block, BATCH))
    gen = torch.Generator().manual_seed(SEED + 1)
    return [get_batch(val, BATCH, block, gen) for _ in range(EVAL_ITERS)]


@torch.no_grad()
def mean_loss(logits_of, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    total = sum(F.cross_entropy(logits_of(x).flatten(0, 1), y.flatten(), reduction="sum")
                for x, y in batches)  # fmt: skip
    return float(total) / sum(y.numel() for _, y in batches)


@pytest.fixture(scope="module")
def place(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finetune")
    (root / "text.txt").write_text(SHAKESPEARE.read_text(encoding="utf-8")[:40_000])
    return root


@pytest.fixture(scope="module", params=["gpt2", "llama-gqa-tied"])
def source(request: pytest.FixtureRequest, place: Path):
    directory = place / request.param
    directory.mkdir()
    return request.param, directory, SAVERS[request.param](directory)


def run_args(place: Path, name: str, *extra: str | Path) -> list[str | Path]:
    out = ["--out", place / "runs", "--cache-dir", place / "runs" / "cache"]
    return [place / "text.txt", *FAST, *out, "--run", name, *extra]


@pytest.fixture(scope="module")
def straight(source, place: Path) -> Path:
    """A run of 12 steps from the source, with a context of 16 (the source's is 64)."""
    arch, directory, _ = source
    run = place / "runs" / f"{arch}-straight"
    trained(place, *run_args(place, run.name, "--init-from", directory, "--block-size", "16"))
    return run


def test_the_first_eval_is_the_source_models_loss_then_it_falls(
    source, straight: Path, place: Path
) -> None:
    arch, directory, theirs = source
    run = straight
    start = metrics(run)[0]
    assert start["event"] == "start" and start["init_from"]["origin"] == arch.split("-")[0]
    (step0, first), *_, (last_step, final) = evals(run)
    batches = eval_batches(run, place / "text.txt", 16)
    assert step0 == 0 and first == pytest.approx(mean_loss(lambda x: theirs(x).logits, batches))
    assert last_step == 12 and final < first - 0.05
    ckpt = load_checkpoint(run)
    assert ckpt.meta["init_from"]["source"] == str(directory)
    assert ckpt.meta["dataset"]["data_config"]["tokenizer"] == INIT_FROM_TOKENIZER


def test_a_run_from_a_model_resumes_exactly(source, straight: Path, place: Path) -> None:
    arch, directory, _ = source
    paused = run_args(place, f"{arch}-paused", "--init-from", directory, "--block-size", "16")
    trained(place, *paused, "--stop-at", "5")
    trained(place, *run_args(place, f"{arch}-paused", "--resume"))
    rows = without_time(metrics(place / "runs" / f"{arch}-paused"))
    assert [row.get("event") for row in rows].count("resume") == 1
    kept = [row for row in rows if row.get("event") not in ("stop", "resume")]
    assert kept == without_time(metrics(straight))


def test_a_minigpt_run_with_a_shorter_context(source, straight: Path, place: Path) -> None:
    """From a minigpt run, with half its context: a learned position table keeps its
    first rows, so the first eval is the source run's model on windows of 8 tokens."""
    arch, parent = source[0], straight
    child = place / "runs" / f"{arch}-child"
    trained(place, *run_args(place, child.name, "--init-from", parent, "--block-size", "8"))
    assert load_checkpoint(child).config.block_size == 8
    assert metrics(child)[0]["init_from"] == {"source": str(parent), "origin": "minigpt",
                                              "step": 12}  # fmt: skip
    model = load_checkpoint(parent).model
    expected = mean_loss(model, eval_batches(child, place / "text.txt", 8))
    assert evals(child)[0] == (0, pytest.approx(expected, rel=1e-5))


def gpt2_dir(place: Path) -> tuple[Path, torch.nn.Module]:
    directory = place / "gpt2-alone"
    directory.mkdir(exist_ok=True)
    return directory, SAVERS["gpt2"](directory)


def test_two_processes_start_from_the_same_weights(place: Path) -> None:
    directory, theirs = gpt2_dir(place)
    run = place / "runs" / "nproc2"
    trained(place, *run_args(place, run.name, "--init-from", directory, "--block-size", "16",
                             "--nproc", "2"))  # fmt: skip
    assert metrics(run)[0]["init_from"]["origin"] == "gpt2"
    batches = eval_batches(run, place / "text.txt", 16)
    step0, first = evals(run)[0]
    assert step0 == 0 and first == pytest.approx(mean_loss(lambda x: theirs(x).logits, batches))
    assert evals(run)[-1][1] < first


def refused(place: Path, *args: str | Path, words: tuple[str, ...]) -> None:
    runs = place / "refusals"
    done = minigpt_train(place, place / "text.txt", "--out", runs, *args)
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr
    assert not runs.exists() or not any(runs.iterdir())


def test_what_a_run_from_a_model_cannot_change_is_refused(place: Path) -> None:
    directory, _ = gpt2_dir(place)
    src = ["--init-from", directory]
    refused(place, *src, "--block-size", "128", words=("--block-size 128", "64"))
    with pytest.raises(ConfigError, match="drop --n-layer, --tie"):
        start_config(load_start(str(directory)), {"n_layer": 3, "tie_embeddings": False})
    src_name = str(directory)
    with pytest.raises(ConfigError, match="drop --tokenizer"):
        check_init_from(src_name, None, None, {"tokenizer": "char"})
    with pytest.raises(ConfigError, match="drop --preset"):
        check_init_from(src_name, None, "tiny", {})
    with pytest.raises(ConfigError, match="drop --init-from"):
        check_init_from(src_name, "some-run", None, {})
    refused(place, "--init-from", place / "absent", words=("absent",))
    refused(place, "--tokenizer", INIT_FROM_TOKENIZER, words=("--init-from",))
    other = place / "char-dataset"
    build_dataset(place / "text.txt", DataConfig(tokenizer="char"), other)
    done = minigpt_train(place, other, *src, "--out", place / "refusals")
    assert done.returncode != 0 and "another tokenizer" in done.stderr, done.stderr
