"""Runs: a snapshot outside its run never makes its parent a run, run names stay under
--out, and contradictory options are refused ("nothing lost" issue, items 2, 14, 15)."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from minigpt.checkpoint import load_checkpoint
from minigpt.errors import EXIT_INTERRUPTED
from tests.conftest import SHAKESPEARE
from tests.hostile.conftest import tree_hashes

SHAKESPEARE_SAMPLE = SHAKESPEARE.read_text(encoding="utf-8")[:5000]


def test_a_copied_snapshot_never_makes_its_parent_a_run(
    cli, trained_run: Path, corpus: Path, tmp_path: Path
) -> None:
    """Item 2: `cp -r run/latest snap; train --resume snap` deleted snap's siblings."""
    home = tmp_path / "home"
    (home / "best").mkdir(parents=True)
    (home / "best" / "important.txt").write_text("mine")
    (home / "metrics.jsonl").write_text('{"mine": true}\n')
    shutil.copytree(trained_run / "latest", home / "snap")
    before = tree_hashes(home)
    outcome = cli("train", corpus, "--resume", home / "snap", "--max-iters", 8)
    assert outcome.one_clear_line and "outside a run directory" in outcome.err
    assert tree_hashes(home) == before


def test_a_run_name_stays_under_out(cli, corpus: Path, tmp_path: Path) -> None:
    """Item 15: --run ../x and --run /abs wrote outside --out without a word."""
    out = tmp_path / "runs"
    for name in ("../x", str(tmp_path / "abs"), ".."):
        outcome = cli("train", corpus, "--run", name, "--out", out, "--max-iters", 1)
        assert outcome.one_clear_line and "plain name" in outcome.err
    assert not (tmp_path / "x").exists() and not (tmp_path / "abs").exists()


def test_run_and_out_beside_an_explicit_resume_are_refused(
    cli, run_copy: Path, corpus: Path, tmp_path: Path
) -> None:
    """Item 15: `--resume RUN --run NEW --out DIR` silently ignored --run and --out."""
    before = tree_hashes(run_copy)
    for extra in (("--run", "new"), ("--out", tmp_path / "elsewhere")):
        outcome = cli("train", corpus, "--resume", run_copy, *extra, "--max-iters", 8)
        assert outcome.one_clear_line and "drop --run and --out" in outcome.err
    assert tree_hashes(run_copy) == before


def test_a_corpus_whose_name_is_not_utf8_makes_a_usable_run(cli, tmp_path: Path) -> None:
    """Item 14: the run of `bad\\xff.txt` could not be sampled or resumed afterwards."""
    corpus = Path(os.fsdecode(bytes(tmp_path) + b"/bad\xff.txt"))
    corpus.write_text("to be or not to be, that is the question. " * 300)
    out = tmp_path / "runs"
    args = ("--preset", "tiny", "-t", "char", "--eval-interval", 2, "--out", out)
    assert cli("train", corpus, "--max-iters", 2, *args).code == 0
    (run,) = [p for p in out.iterdir() if not p.name.startswith(".")]
    assert run.name.isprintable() and run.name.startswith("bad_")
    assert load_checkpoint(run).tokenizer.vocab_size > 0
    assert cli("sample", "-c", run, "-n", 3).code == 0
    assert cli("train", corpus, "--resume", "--max-iters", 4, *args).code == 0


def test_a_closed_output_stops_training_with_a_checkpoint(corpus: Path, tmp_path: Path) -> None:
    """Item 4: `train ... | head -3` exited at the next print without saving."""
    out = tmp_path / "runs"
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    command = (
        f"{shlex.quote(sys.executable)} -m minigpt train {shlex.quote(str(corpus))} --preset tiny"
        f" -t char --max-iters 100000 --eval-interval 50 --out {shlex.quote(str(out))}"
        " --run r | head -3"
    )
    done = subprocess.run(["bash", "-o", "pipefail", "-c", command], env=env, timeout=300,
                          capture_output=True, text=True)  # fmt: skip
    assert "Traceback" not in done.stderr, done.stderr
    assert done.returncode == EXIT_INTERRUPTED  # stopped as SIGTERM would stop it
    rows = [json.loads(line) for line in (out / "r" / "metrics.jsonl").read_text().splitlines()]
    assert rows[-1]["event"] == "stop"
    assert load_checkpoint(out / "r").meta["step"] == rows[-1]["step"] >= 1


def start_training(corpus: Path, out: Path, run: str, *extra: object) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])}
    args = ["train", corpus, "--preset", "tiny", "-t", "char", "--out", out, "--run", run]
    return subprocess.Popen(
        [sys.executable, "-m", "minigpt", *map(str, args), *map(str, extra)], env=env,
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_one_writer_per_run(corpus: Path, tmp_path: Path) -> None:
    """Item 5: two `train --run same` started together both ran, logging twice."""
    out = tmp_path / "runs"
    procs = [start_training(corpus, out, "same", "--max-iters", 300) for _ in range(3)]
    errors = [p.communicate(timeout=600)[1] for p in procs]
    codes = sorted(p.returncode for p in procs)
    assert codes == [0, 1, 1], errors
    refusals = [e for p, e in zip(procs, errors, strict=True) if p.returncode]
    assert all("is in use by another minigpt train" in e and "Traceback" not in e
               for e in refusals), refusals  # fmt: skip
    rows = [json.loads(line) for line in (out / "same" / "metrics.jsonl").read_text().splitlines()]
    assert [r["event"] for r in rows if "event" in r] == ["start"]


def test_resuming_a_run_that_is_training_is_refused_and_readers_get_whole_snapshots(
    cli, corpus: Path, tmp_path: Path
) -> None:
    """Items 5 and 7: `--resume` of a run another process trains was accepted; `sample`
    while latest/ is rewritten every step read half-old, half-new snapshots."""
    out = tmp_path / "runs"
    trainer = start_training(corpus, out, "busy", "--max-iters", 100000, "--save-every", 1,
                             "--eval-interval", 1000, "--preset", "small")  # fmt: skip
    try:
        for _ in range(600):
            if (out / "busy" / "latest").is_dir() or trainer.poll() is not None:
                break
            time.sleep(0.1)
        assert trainer.poll() is None, trainer.stderr.read() if trainer.stderr else ""
        outcome = cli("train", corpus, "--resume", out / "busy", "--max-iters", 100001)
        assert outcome.one_clear_line and "is in use" in outcome.err
        steps = {load_checkpoint(out / "busy").meta["step"] for _ in range(60)}
        assert len(steps) > 1  # it read snapshots while they were being replaced
        for _ in range(3):
            assert cli("sample", "-c", out / "busy", "-n", 4).code == 0
    finally:
        trainer.terminate()
        trainer.communicate(timeout=300)
    assert trainer.returncode in (0, EXIT_INTERRUPTED)


@pytest.mark.parametrize(
    ("key", "value"),
    [("tokens", "1" + "0" * 400), ("world_size", "1" + "0" * 30), ("elapsed", "-1e300"),
     ("step", "-1"), ("best_step", "99999999")],
)  # fmt: skip
def test_a_hostile_training_state_is_refused(
    cli, run_copy: Path, corpus: Path, key: str, value: str
) -> None:
    """Item 12: `"tokens": 10**400` trained, saved, then ended in an OverflowError."""
    file = run_copy / "latest" / "train_state.json"
    data = json.loads(file.read_text())
    data["state"][key] = "PLACEHOLDER"
    file.write_text(json.dumps(data).replace('"PLACEHOLDER"', value))
    outcome = cli("train", corpus, "--resume", run_copy, "--max-iters", 50)
    assert outcome.one_clear_line and key in outcome.err


@pytest.mark.parametrize("bad", [b"[" * 100_000 + b"]" * 100_000, b'{"step": 3, "loss": "\xff"}'])
def test_a_damaged_metrics_line_is_no_traceback(
    cli, run_copy: Path, corpus: Path, tmp_path: Path, bad: bytes
) -> None:
    """Item 23: a deeply nested or non-UTF-8 line gave RecursionError/UnicodeDecodeError
    tracebacks in plot and train --resume; it is skipped and counted."""
    metrics = run_copy / "metrics.jsonl"
    lines = metrics.read_bytes().splitlines(keepends=True)
    metrics.write_bytes(b"".join(lines[:2]) + bad + b"\n" + b"".join(lines[2:]))
    outcome = cli("plot", run_copy, "--out", tmp_path / "loss.png")
    assert outcome.code == 0 and (tmp_path / "loss.png").is_file()
    assert "skipped 1 damaged line(s)" in outcome.err and "(line 3)" in outcome.err
    assert cli("train", corpus, "--resume", run_copy, "--max-iters", 6).code == 0
    assert bad not in metrics.read_bytes()  # the resumed log dropped the damaged line


def test_a_linked_latest_is_refused_before_training(
    cli, run_copy: Path, corpus: Path, tmp_path: Path
) -> None:
    """Item 10: a symlinked latest/ crashed the second save with "free some space"."""
    elsewhere = tmp_path / "elsewhere" / "latest"
    elsewhere.parent.mkdir()
    shutil.move(run_copy / "latest", elsewhere)
    (run_copy / "latest").symlink_to(elsewhere)
    before = tree_hashes(elsewhere)
    outcome = cli("train", corpus, "--resume", run_copy, "--max-iters", 8)
    assert outcome.one_clear_line and "symbolic link" in outcome.err
    assert "free some space" not in outcome.err and tree_hashes(elsewhere) == before


def test_a_run_that_failed_before_saving_can_be_started_again(
    cli, corpus: Path, tmp_path: Path
) -> None:
    """Item 11: the retry said "already exists ... add --resume", and --resume said "not
    a minigpt checkpoint"."""
    out = tmp_path / "runs"
    (out / "r").mkdir(parents=True)
    (out / "r" / "metrics.jsonl").write_text('{"event": "start", "step": 0, "params": 1}\n')
    resumed = cli("train", corpus, "--resume", out / "r", "--max-iters", 2)
    assert resumed.one_clear_line and "stopped before the first save" in resumed.err
    args = ("--preset", "tiny", "-t", "char", "--max-iters", 2, "--eval-interval", 2)
    assert cli("train", corpus, *args, "--out", out, "--run", "r").code == 0
    rows = (out / "r" / "metrics.jsonl").read_text().splitlines()
    assert sum('"start"' in row for row in rows) == 1


def test_a_run_with_only_best_is_still_sampled(cli, run_copy: Path, tmp_path: Path) -> None:
    """Item 11: with latest/ deleted, `sample -c run` and a bare `sample` found nothing."""
    shutil.rmtree(run_copy / "latest")
    assert cli("sample", "-c", run_copy, "-n", 3).code == 0
    assert cli("sample", "--checkpoints", run_copy.parent, "-n", 3).code == 0


def test_a_prompt_file_is_read_with_a_bound(cli, trained_run: Path) -> None:
    """Item 21: `--prompt-file /dev/zero` read without end and blamed --batch-size."""
    outcome = cli("sample", "-c", trained_run, "--prompt-file", "/dev/zero", "-n", 2)
    assert outcome.one_clear_line and "larger than 1 MiB" in outcome.err


def test_a_bare_resume_matches_the_text_not_the_file_name(cli, tmp_path: Path) -> None:
    """Item 9: `train d2/input.txt --resume` continued the run of d1/input.txt (same
    name, other text) without a word."""
    text = SHAKESPEARE_SAMPLE * 4
    d1, d2, d3 = (tmp_path / d / "input.txt" for d in ("d1", "d2", "d3"))
    for path, body in ((d1, text), (d2, text[::-1]), (d3, text)):
        path.parent.mkdir()
        path.write_text(body)
    out = tmp_path / "runs"
    tiny = ("--preset", "tiny", "--tokenizer", "char", "--eval-interval", 2, "--out", out)
    assert cli("train", d1, *tiny, "--max-iters", 2, "--run", "one").code == 0
    before = tree_hashes(out)

    other = cli("train", d2, "--resume", *tiny, "--max-iters", 4)
    assert other.one_clear_line and "no run trained on this input.txt" in other.err
    d1.write_text(text + "more")
    changed = cli("train", d1, "--resume", *tiny, "--max-iters", 4)
    assert changed.one_clear_line and "input.txt changed since run one" in changed.err
    assert tree_hashes(out) == before

    moved = cli("train", d3, "--resume", *tiny, "--max-iters", 4)  # the same text, moved
    assert moved.code == 0
    assert load_checkpoint(out / "one").meta["step"] == 4


def test_an_explicit_resume_on_other_text_says_so(
    cli, run_copy: Path, corpus: Path, tmp_path: Path
) -> None:
    """Item 9: a char run resumed on other text went on silently; a run whose tokenizer
    the new text changes was refused as "another tokenizer" without naming the text."""
    other = tmp_path / "other.txt"
    other.write_text(corpus.read_text() + "€")  # a character the run's vocabulary lacks
    refused = cli("train", other, "--resume", run_copy, "--max-iters", 8)
    assert refused.one_clear_line
    assert "trained on other text (small.txt) with a char tokenizer" in refused.err
    other.write_text(corpus.read_text()[::-1])  # other text, the same characters
    outcome = cli("train", other, "--resume", run_copy, "--max-iters", 6)
    assert outcome.code == 0
    assert "trained on other text (small.txt" in outcome.err
    assert "continues on other.txt" in outcome.err
