"""Every bound is named, and every suggestion works ("nothing lost" issue, item 22)."""

from __future__ import annotations

import re
from pathlib import Path


def test_a_huge_batch_size_is_refused_naming_the_bound(cli, corpus: Path, tmp_path: Path) -> None:
    outcome = cli("train", corpus, "--preset", "tiny", "--batch-size", 10**20, "--out", tmp_path)
    assert outcome.one_clear_line and "65,536" in outcome.err


def test_every_count_setting_names_its_bound(cli, corpus: Path, tmp_path: Path) -> None:
    for flag in ("--max-iters", "--grad-accum", "--eval-interval", "--log-interval"):
        outcome = cli("train", corpus, flag, 10**30, "--out", tmp_path)
        assert outcome.one_clear_line and re.search(r"from \d+ to [\d,]+", outcome.err), flag


def test_a_huge_bpe_vocabulary_is_refused_naming_the_limit(cli, corpus: Path) -> None:
    outcome = cli("tokenize", corpus, "--vocab-size", 10**9)
    assert outcome.one_clear_line and "1,000,000" in outcome.err and "258" in outcome.err


def test_the_suggested_block_size_trains(cli, corpus: Path, tmp_path: Path) -> None:
    args = ("train", corpus, "--preset", "tiny", "-t", "char", "--max-iters", 1,
            "--batch-size", 1, "--eval-interval", 1, "--out", tmp_path)  # fmt: skip
    outcome = cli(*args, "--block-size", 10**6, "--run", "big")
    assert outcome.one_clear_line
    suggested = re.search(r"--block-size (\d+) or less", outcome.err)
    assert suggested is not None
    assert cli(*args, "--block-size", suggested.group(1), "--run", "fits").code == 0
