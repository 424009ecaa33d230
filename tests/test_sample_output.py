"""What `minigpt sample` prints: --show-probs (the model's and the sampler's
probabilities, tokens escaped once, alternatives wrapped between pairs), --json's
probabilities, the line break that ends the text, and the stderr summary in words."""

from __future__ import annotations

import io
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
import torch
from rich.console import Console

from minigpt.checkpoint import save_checkpoint
from minigpt.cli.probs import probs_table
from minigpt.generation.generate import Completion
from minigpt.generation.text import TextStream
from minigpt.model import GPT
from minigpt.tokenizer.encodings import CharTokenizer
from tests.conftest import tiny_config

TEXT = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ,.:;!?'\n"
QUOTED = r"""(?:'[^']*'|"[^"]*")"""
PAIRS = re.compile(rf"{QUOTED} \d\.\d\d(?:  {QUOTED} \d\.\d\d)*")


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random char-level model: near-uniform guesses, which is all printing needs."""
    tok = CharTokenizer.from_text(TEXT)
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=tok.vocab_size, block_size=64))
    path = tmp_path_factory.mktemp("ckpt") / "run" / "latest"
    save_checkpoint(path, model, tok, {"step": 0})
    return path


def sample(
    checkpoint: Path, *args: str, columns: int = 100, merged: bool = False
) -> subprocess.CompletedProcess:
    """`minigpt sample` into pipes (`merged`: stderr into stdout's pipe)."""
    env = {**os.environ, "COLUMNS": str(columns)}
    return subprocess.run(
        [sys.executable, "-m", "minigpt", "sample", "-c", str(checkpoint), *args],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT if merged else subprocess.PIPE,
        text=True, env=env, timeout=120,
    )  # fmt: skip


def rows(table: str) -> list[list[str]]:
    """The cells of each numbered row of a printed table."""
    lines = [line for line in table.splitlines() if line.strip()[:1].isdigit()]
    return [[cell.strip() for cell in line.split("│")] for line in lines]


def test_show_probs_gives_the_models_and_the_samplers_probability(checkpoint: Path) -> None:
    """At top-k 1 the sampler was certain (p drawn 1) whatever the model thought."""
    shown = sample(checkpoint, "--show-probs", "-n", "6", "-p", "Hi", "--temperature", "1.5",
                   "--top-k", "1")  # fmt: skip
    assert shown.returncode == 0, shown.stderr
    assert "p model" in shown.stdout and "p drawn" in shown.stdout
    table = rows(shown.stdout)
    assert len(table) == 6
    assert all(float(row[2]) < 0.5 and row[3] == "1.000" for row in table), table


def test_json_keeps_logprobs_and_adds_the_samplers(checkpoint: Path) -> None:
    out = json.loads(sample(checkpoint, "--json", "-n", "8", "--top-k", "3").stdout)
    s = out["samples"][0]
    assert len(s["logprobs"]) == len(s["sampled_logprobs"]) == len(s["token_ids"]) == 8
    # three near-equal candidates: about 1/3 each to the sampler, far less to the model
    assert all(d > m for d, m in zip(s["sampled_logprobs"], s["logprobs"], strict=True))


def test_alternatives_wrap_between_pairs_never_inside_one(checkpoint: Path) -> None:
    shown = sample(checkpoint, "--show-probs", "-n", "6", "-p", "Hi", columns=46)
    cells = [line.split("│")[-1].strip() for line in shown.stdout.splitlines() if "│" in line]
    assert len(cells) > 6  # wrapped, or the test proves nothing
    assert all(PAIRS.fullmatch(cell) for cell in cells if cell), cells


def test_a_newline_token_shows_escaped_once() -> None:
    tok = CharTokenizer.from_text("ab\n")
    newline, a = tok.encode("\n")[0], tok.encode("a")[0]
    c = Completion(TextStream(tok), [newline, a], [-0.1, -2.0], [-0.05, -9.0],
                   [[(newline, -0.1), (a, -3.0)], [(newline, -0.5), (a, -2.0)]])  # fmt: skip
    out = io.StringIO()
    Console(file=out, width=80, color_system=None).print(probs_table(tok, c, None))
    table = rows(out.getvalue())
    assert table[0][1] == r"'\n'" and table[1][1] == "'a'"
    assert table[0][4].startswith(r"'\n' 0.90") and "\\\\" not in out.getvalue()
    assert table[1][3] == "1e-04"  # a small p drawn is not 0.000


def test_the_text_ends_with_one_line_break_before_the_summary(checkpoint: Path) -> None:
    both = sample(checkpoint, "-n", "5", "-p", "Hi", merged=True)
    text, summary = both.stdout.splitlines()
    assert text.startswith("Hi") and summary.startswith(str(checkpoint))
    assert "onednn-packed" not in summary and "(matmuls" not in summary
    assert sample(checkpoint, "-n", "0", "-p", "Hi\n").stdout == "Hi\n"  # not "Hi\n\n"
    batch = sample(checkpoint, "-n", "0", "-p", "Hi\n", "--num-samples", "2").stdout
    assert batch == "--- sample 1 ---\nHi\n--- sample 2 ---\nHi\n"
    child = pexpect.spawn(
        sys.executable, ["-m", "minigpt", "sample", "-c", str(checkpoint), "-n", "0", "-p", "Hi\n"],
        encoding="utf-8", timeout=120,
    )  # fmt: skip
    child.expect(pexpect.EOF)
    shown = re.sub(r"\x1b\[[0-9;]*m", "", child.before or "")
    assert shown.startswith("Hi\r\n" + str(checkpoint)), shown
