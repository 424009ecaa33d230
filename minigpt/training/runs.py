"""Which run a bare `train FILE --resume` continues: the newest run trained on FILE's text;
and a run directory that holds nothing saved.

A run remembers its text by identity: the sha256 of its bytes (of a directory of text
files, the sha256 its dataset records: `minigpt.data.documents`) and the file's absolute
path (`source_sha256` and `source_path` in the dataset meta a checkpoint records). The
text's content decides: a run of the same bytes is continued wherever the file now
lives; a run of the same path whose bytes changed is named, with the change, and never
continued silently; a file that merely shares the name of another run's file matches
nothing.

A run that stops before its first checkpoint leaves a directory holding only its
metrics.jsonl (`never_saved`); after an interrupt, `discard_unsaved_run` removes it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, NamedTuple

from minigpt.checkpoint import CONFIG, LATEST, read_meta
from minigpt.data.cache import display_name, source_path, text_sha256
from minigpt.data.dataset import is_dataset_dir, load_dataset
from minigpt.errors import CheckpointError, ConfigError
from minigpt.training.metrics import METRICS


class TextIdentity(NamedTuple):
    """What a run was trained on: the text's sha256, and its file's path if known."""

    sha256: str
    path: str | None


def identity_of(file: Path) -> TextIdentity:
    """The identity of a text file or directory of text files, or of the text a dataset
    directory was built from."""
    if is_dataset_dir(file):
        return TextIdentity(str(load_dataset(file).meta.get("source_sha256")), None)
    return TextIdentity(text_sha256(file), source_path(file))


def recorded_identity(meta: dict[str, Any]) -> TextIdentity | None:
    """The text a snapshot's config.json says its run was trained on."""
    dataset = meta.get("dataset")
    if not isinstance(dataset, dict) or not isinstance(dataset.get("source_sha256"), str):
        return None
    path = dataset.get("source_path")
    return TextIdentity(dataset["source_sha256"], path if isinstance(path, str) else None)


def newest_run_of(file: Path, out: Path) -> Path:
    """The run directory under `out` most recently saved that was trained on FILE's text."""
    if not file.exists():
        raise ConfigError(f"{file} does not exist; give the text file the run was trained on")
    wanted = identity_of(file)
    runs = _recorded_runs(out)
    same_text = [run for run, found in runs.items() if found.sha256 == wanted.sha256]
    if same_text:
        return _newest(same_text)
    name = display_name(file)
    same_path = [run for run, found in runs.items() if wanted.path and found.path == wanted.path]
    if same_path:
        run = _newest(same_path)
        raise ConfigError(
            f"{name} changed since run {display_name(run)} was trained on it (its text's "
            f"sha256 was {runs[run].sha256[:12]}, now {wanted.sha256[:12]}); to continue that "
            f"run on the new text pass --resume {run}, or drop --resume to start a new run"
        )
    raise CheckpointError(
        f"no run trained on this {name} under {out}/ (runs are matched by the text's "
        "content); pass --resume RUN_DIR or --run NAME"
    )


def _recorded_runs(out: Path) -> dict[Path, TextIdentity]:
    """Each run directory under `out` with a readable latest/, and the text it names."""
    runs = {}
    for config in out.glob(f"*/{LATEST}/{CONFIG}"):
        try:
            found = recorded_identity(read_meta(config.parent))
        except CheckpointError:
            continue
        if found is not None:
            runs[config.parent.parent] = found
    return runs


def _newest(runs: list[Path]) -> Path:
    """The run whose latest/config.json was written last."""
    return max(runs, key=lambda run: (run / LATEST / CONFIG).stat().st_mtime_ns)


def never_saved(run_dir: Path) -> bool:
    """A run directory holding only the log of a run that stopped before its first save."""
    return run_dir.is_dir() and [p.name for p in run_dir.iterdir()] == [METRICS]


def discard_unsaved_run(run_dir: Path, made_here: bool) -> bool:
    """Remove what a new run that stopped before its first save left: its metrics.jsonl,
    and `run_dir` itself when `made_here` (the run created it). Whether it did; nothing
    is touched when the directory holds anything else."""
    if not never_saved(run_dir):
        return False
    (run_dir / METRICS).unlink()
    if made_here:
        try:
            run_dir.rmdir()  # only while empty: a file that appeared meanwhile stays
        except OSError:
            pass
    return True
