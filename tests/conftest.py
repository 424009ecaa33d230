"""Shared pytest fixtures: paths to ../shared, offline tiktoken, tiny corpora and models."""

import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from minigpt.config import DataConfig, GPTConfig
from minigpt.data.dataset import Dataset, build_dataset, load_dataset

SHARED = Path(__file__).resolve().parents[2] / "shared"
SHAKESPEARE = SHARED / "data" / "shakespeare.txt"
# The offline tiktoken cache shipped next to the checkout (gpt2 / r50k_base vocabularies).
TIKTOKEN_CACHE = SHARED / "tiktoken-cache"


@pytest.fixture(scope="session", autouse=True)
def tiktoken_cache_dir() -> None:
    """Point tiktoken at the offline cache unless the environment already chose one."""
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))


@pytest.fixture(scope="session", autouse=True)
def ctrl_c_reaches_children() -> None:
    """Commands the tests start get Ctrl-C as from a terminal. A test run started in
    the background of a shell (`pytest &`) has SIGINT ignored, and an ignored signal
    stays ignored in every child: the tests of Ctrl-C would time out, their children
    left running. A handled signal is reset to its default in a child."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session", autouse=True)
def speed_cache_dir(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Keep the speed measurements of the tests (minigpt.tuning) out of the user's cache
    directory: one directory for the session, so each shape is measured once. CLI
    subprocesses inherit it through the environment."""
    os.environ["MINIGPT_CACHE_DIR"] = str(tmp_path_factory.mktemp("speed-cache"))


@pytest.fixture(scope="session")
def shakespeare_text() -> str:
    return SHAKESPEARE.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def small_text(shakespeare_text: str) -> str:
    """About 30 KB of shakespeare: enough for tiny models, quick to tokenize."""
    return shakespeare_text[:30_000]


@pytest.fixture(scope="session")
def char_dataset(tmp_path_factory: pytest.TempPathFactory, small_text: str) -> Dataset:
    out = tmp_path_factory.mktemp("data") / "small-char"
    build_dataset(small_text.encode(), DataConfig(tokenizer="char"), out, source="small.txt")
    return load_dataset(out)


def tiny_config(**overrides) -> GPTConfig:
    """A model small enough to train for a few steps in a test."""
    fields = dict(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=32)
    fields.update(overrides)
    return GPTConfig(**fields)


@pytest.fixture
def quiet_transformers() -> Iterator[None]:
    """Keep transformers' info/warning logs out of the test output."""
    import transformers

    verbosity = transformers.logging.get_verbosity()
    transformers.logging.set_verbosity_error()
    yield
    transformers.logging.set_verbosity(verbosity)
