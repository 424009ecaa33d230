"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest

# The offline tiktoken cache shipped next to the checkout (gpt2 / r50k_base vocabularies).
TIKTOKEN_CACHE = Path(__file__).resolve().parents[2] / "shared" / "tiktoken-cache"


@pytest.fixture(scope="session", autouse=True)
def tiktoken_cache_dir() -> None:
    """Point tiktoken at the offline cache unless the environment already chose one."""
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(TIKTOKEN_CACHE))
