"""What holds for every command: out of memory is a hint, not a traceback; --debug
shows the traceback; a failure leaves the user's files as they were."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from tests.hostile.conftest import tree_hashes

OOM_ERRORS = {
    "torch.OutOfMemoryError": lambda: torch.OutOfMemoryError("CUDA out of memory."),
    "MemoryError": lambda: MemoryError(),
    "RuntimeError from the allocator": lambda: RuntimeError(
        "DefaultCPUAllocator: can't allocate memory"
    ),
}


def raiser(make):
    def fail(*args, **kwargs):
        raise make()

    return fail


@pytest.mark.parametrize("error", list(OOM_ERRORS))
def test_out_of_memory_in_training_is_a_hint(
    cli, corpus: Path, tmp_path: Path, error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("minigpt.cli.train_cmd.train", raiser(OOM_ERRORS[error]))
    result = cli("train", corpus, "--preset", "tiny", "--max-iters", 2, "--out", tmp_path)
    assert result.one_clear_line and "smaller --batch-size" in result.err


@pytest.mark.parametrize("error", list(OOM_ERRORS))
def test_out_of_memory_while_sampling_is_a_hint(
    cli, trained_run: Path, error: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("minigpt.generation.generate.generate", raiser(OOM_ERRORS[error]))
    before = tree_hashes(trained_run)
    result = cli("sample", "-c", trained_run, "--num-samples", 64)
    last = result.err.strip().splitlines()[-1]
    assert result.code == 1 and "Traceback" not in result.err
    assert last.startswith("error: out of memory") and "fewer --num-samples" in last
    assert tree_hashes(trained_run) == before


def test_debug_shows_the_traceback_of_a_refused_checkpoint(cli, run_copy: Path) -> None:
    (run_copy / "latest" / "model.safetensors").write_bytes(b"not safetensors")
    plain = cli("sample", "-c", run_copy)
    assert plain.one_clear_line
    debug = cli("--debug", "sample", "-c", run_copy)
    assert debug.code != 0 and "Traceback" in debug.err and "CheckpointError" in debug.err


def test_an_unexpected_error_still_gets_a_traceback_without_debug_hidden(
    cli, trained_run: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A bug (not a user error) is not dressed up as one: it raises, so it is reported."""
    monkeypatch.setattr("minigpt.generation.generate.generate", raiser(lambda: ZeroDivisionError()))
    with pytest.raises(ZeroDivisionError):
        cli("sample", "-c", trained_run)
