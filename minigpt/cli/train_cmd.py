"""`minigpt train`: turn options into configs, call `minigpt.training.trainer.train`, show progress.

A new run starts from a preset plus the options given. `--resume` continues a saved
run: its model, tokenizer and training settings are taken from the checkpoint, and
any training option given on the command line replaces the saved one (the change is
logged); a different model shape or tokenizer is refused. `--init-from SOURCE` starts
a new run from a model's weights, shape and tokenizer, with fine-tuning settings
(`minigpt.training.init_from`, `minigpt.presets.FINETUNE`). Under torchrun (or with
`--nproc N`) every process runs this command; rank 0 prepares the data and writes.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

from minigpt.checkpoint import LATEST, Snapshot, read_snapshot
from minigpt.cli.dashboard import PlainReporter, RichReporter
from minigpt.cli.launch import RESUME_NEWEST
from minigpt.cli.options import threads_option
from minigpt.cli.run_dirs import check_new_run_dir, new_run_dir, run_dir_of, run_lock
from minigpt.cli.settings import Convert, option, parse_duration, with_settings
from minigpt.cli.signals import ClosedOutputGuard, GracefulStop
from minigpt.cli.terminal import stderr, stdout
from minigpt.cli.train_settings import (
    check_init_from,
    new_settings,
    resumed_settings,
    start_settings,
)
from minigpt.config import INIT_FROM_TOKENIZER, DataConfig, GPTConfig, TrainConfig
from minigpt.data.cache import prepare_dataset
from minigpt.data.dataset import Dataset, is_dataset_dir, load_dataset
from minigpt.device import check_threads
from minigpt.errors import (
    EXIT_INTERRUPTED,
    ConfigError,
    DataError,
    MinigptError,
)
from minigpt.fileio import open_regular
from minigpt.presets import DEFAULT_PRESET, GPU_PRESET, PRESETS, preset
from minigpt.tokenizer.encodings import Tokenizer
from minigpt.training import distributed
from minigpt.training.init_from import Start, load_start, start_label
from minigpt.training.reporting import StopReason
from minigpt.training.runs import discard_unsaved_run, newest_run_of, recorded_identity
from minigpt.training.tensorboard import check_tensorboard
from minigpt.training.trainer import train

RUNS = Path("checkpoints")  # where runs go without --out
DURATION = Convert(str, parse_duration, "DURATION")  # --time takes 90s, 3m or 1h30m
NOTHING_SAVED = "stopped before the first checkpoint; nothing was saved"


FileArg = Annotated[
    Path,
    typer.Argument(
        help="A text file, a directory of .txt files (each a document), or a dataset directory.",
        metavar="FILE",
    ),
]
PresetOpt = Annotated[
    str | None,
    option(
        f"Model shape: {', '.join(PRESETS)}.",
        "--preset",
        default=f"{DEFAULT_PRESET}; {GPU_PRESET} on a CUDA GPU",
        metavar="NAME",
    ),  # fmt: skip
]
ResumeOpt = Annotated[
    str | None,
    option("Continue a run: its directory, or alone for the newest run of FILE's text.",
           "--resume", default="a new run", metavar="RUN"),
]  # fmt: skip
InitFromOpt = Annotated[
    str | None,
    option(
        "Fine-tune a model: a minigpt run or snapshot, a Hugging Face model directory or a "
        "hub name (as minigpt import takes). Its shape and tokenizer are kept; "
        "--block-size may be shorter.",
        "--init-from", default="random weights", metavar="SOURCE",
    ),
]  # fmt: skip
StopAtOpt = Annotated[
    int | None,
    option("Save and stop after this step (continue with --resume).", "--stop-at",
           default="none", metavar="STEP"),
]  # fmt: skip
NprocOpt = Annotated[
    int | None,
    option(
        "Train with N processes (DistributedDataParallel).", "--nproc", default="1", metavar="N"
    ),
]
RunOpt = Annotated[
    str | None,
    option("Run name.", "--run", default="file, tokenizer and time", metavar="NAME"),
]
OutOpt = Annotated[
    Path | None, option("Where runs are written.", "--out", default=str(RUNS), metavar="DIR")
]
CacheDirOpt = Annotated[
    Path, option("Tokenized dataset cache.", "--cache-dir", default="data/cache", metavar="DIR")
]
# An output location, like --out: an option of this command, never saved in the run.
TensorBoardOpt = Annotated[
    Path | None,
    option(
        "Also write the metrics as TensorBoard events to DIR/<run> (view them with "
        "tensorboard --logdir DIR); give it again with --resume.",
        "--tensorboard", default="none", metavar="DIR",
    ),
]  # fmt: skip
# Per process: under --nproc N each process has N threads; without it, cores / N each.
ThreadsOpt = Annotated[int | None, threads_option("torch's choice; with --nproc P, cores / P")]


@with_settings("given_data", DataConfig, given_only=True)
@with_settings("given_model", GPTConfig, given_only=True, defaults=preset(DEFAULT_PRESET)[0])
@with_settings(
    "given_train",
    TrainConfig,
    given_only=True,
    defaults=preset(DEFAULT_PRESET)[1],
    converters={"time_budget": DURATION},
)
def train_command(
    *,
    file: FileArg,
    given_data: dict[str, Any],
    preset_name: PresetOpt = None,
    given_model: dict[str, Any],
    given_train: dict[str, Any],
    resume: ResumeOpt = None,
    init_from: InitFromOpt = None,
    stop_at: StopAtOpt = None,
    nproc: NprocOpt = None,
    run: RunOpt = None,
    out: OutOpt = None,
    cache_dir: CacheDirOpt = Path("data/cache"),
    tensorboard: TensorBoardOpt = None,
    threads: ThreadsOpt = None,
) -> None:
    """Train a GPT on a text file or a directory of them; checkpoints go to checkpoints/<run>/."""
    # --time counts from the process's start: importing, tokenizing and start-up are in it
    started = time.perf_counter() - process_age()
    check_options(file, nproc, resume, run, out, given_data, tensorboard, threads)
    check_init_from(init_from, resume, preset_name, given_data)
    out = out or RUNS
    if "max_iters" in given_train or "time_budget" in given_train:
        # the limit given replaces both saved ones; None: that limit is off
        given_train = {"max_iters": None, "time_budget": None, **given_train}
    ctx = distributed.from_env()
    distributed.init(ctx)
    try:
        snapshot, start, tokenizer = None, None, None
        if resume is not None:
            snapshot = read_snapshot(_resume_path(resume, file, run, out), train_state=True)
            settings = resumed_settings(snapshot, preset_name, given_data, given_model, given_train)
            run_dir = run_dir_of(snapshot.path)
            if settings.data.tokenizer == INIT_FROM_TOKENIZER:
                tokenizer = snapshot.tokenizer
        elif init_from is not None:
            start = load_start(init_from)
            settings = start_settings(start, given_data, given_model, given_train)
            run_dir = new_run_dir(file, run, out, settings.data, ctx, label=start_label(start))
            tokenizer = start.tokenizer
        else:
            settings = new_settings(preset_name, given_data, given_model, given_train)
            run_dir = new_run_dir(file, run, out, settings.data, ctx)
        # the threads belong to this machine, not to the run: a resume never reuses them
        settings = settings._replace(train=replace(settings.train, threads=threads))
        with run_lock(run_dir, ctx):
            if snapshot is None:
                check_new_run_dir(run_dir, ctx)
            dataset = _open_dataset(file, settings.data, cache_dir, ctx, tokenizer)
            if snapshot is not None and ctx.is_main:
                _note_other_text(snapshot, dataset)
            model_config = settings.model
            if model_config.vocab_size is None:  # a new run: the tokenizer's vocabulary
                model_config = replace(model_config, vocab_size=dataset.tokenizer.vocab_size)
            code = _run(
                model_config, settings.train, dataset, run_dir, snapshot, stop_at, ctx,
                tensorboard, started, start,
            )  # fmt: skip
    finally:
        distributed.shutdown(ctx)
    if code:
        raise typer.Exit(code)


def _resume_path(resume: str, file: Path, run: str | None, out: Path) -> Path:
    """The run or snapshot `--resume` names: a path, `--run`'s run, or FILE's newest run."""
    if resume != RESUME_NEWEST:
        return Path(resume)
    if run is not None:
        return out / run
    return newest_run_of(file, out)


def _note_other_text(snapshot: Snapshot, dataset: Dataset) -> None:
    """Say so when a resumed run goes on with text other than the one it was trained on
    (with another tokenizer it does not go on: `train` refuses it, naming the text)."""
    trained_on = recorded_identity(snapshot.meta)
    same_tokenizer = snapshot.meta.get("tokenizer") == dataset.tokenizer.spec()
    if trained_on and same_tokenizer and trained_on.sha256 != dataset.meta.get("source_sha256"):
        was = snapshot.meta["dataset"].get("source", "?")
        stderr().print(
            f"note: this run was trained on other text ({was}, sha256 "
            f"{trained_on.sha256[:12]}); it continues on {dataset.meta.get('source', '?')}",
            markup=False,
        )


def check_options(
    file: Path,
    nproc: int | None,
    resume: str | None,
    run: str | None,
    out: Path | None,
    given_data: dict[str, Any],
    tensorboard: Path | None = None,
    threads: int | None = None,
) -> None:
    """Refuse what is contradictory or missing before anything runs: data options for a
    dataset that is already tokenized, a run name that is a path, --run/--out naming
    another run than an explicit --resume RUN_DIR, --tensorboard without tensorboard,
    a thread count torch cannot use."""
    check_threads(threads)
    if tensorboard is not None:
        check_tensorboard()
    if nproc is not None and nproc < 1:
        raise ConfigError("--nproc must be at least 1")
    if is_dataset_dir(file) and given_data:
        raise ConfigError(
            f"{file} is a dataset directory, already tokenized; --tokenizer, --vocab-size, "
            "--val-fraction and --encoding apply to text files only"
        )
    if run is not None and (not run or run in (".", "..") or "/" in run or "\0" in run):
        raise ConfigError(
            f"--run {run!r} must be a plain name (no '/' or '..'): runs go under --out"
        )
    if resume in (None, RESUME_NEWEST):
        return
    target = Path(resume)
    target = target.parent if target.name == LATEST else target  # the run, not its snapshot
    elsewhere = out is not None and out.resolve() != target.parent.resolve()
    if (run is not None and run != target.name) or elsewhere:
        raise ConfigError(
            f"--resume {resume} continues that run where it is; drop --run and --out, or "
            "make them name it (they name a new run, or choose the run a bare --resume "
            "continues)"
        )


def _open_dataset(
    file: Path,
    data_config: DataConfig,
    cache_dir: Path,
    ctx: distributed.DistContext,
    tokenizer: Tokenizer | None = None,
) -> Dataset:
    """The dataset for FILE; with several processes, rank 0 builds it, then all open it.
    `tokenizer`: the one a run from a model tokenizes with (`--tokenizer init-from`)."""
    if is_dataset_dir(file):
        dataset = load_dataset(file)
        if tokenizer is not None and dataset.tokenizer.spec() != tokenizer.spec():
            raise ConfigError(
                f"{file} was tokenized with another tokenizer than the model's; give the "
                "text file instead, and it is tokenized with the model's own"
            )
        return dataset
    dataset, path, problem = None, "", ""
    if ctx.is_main:
        try:
            with stdout().status(f"tokenizing {file} ({data_config.tokenizer} tokenizer)..."):
                dataset = prepare_dataset(file, data_config, cache_dir, tokenizer)
                path = str(dataset.path)
        except MinigptError as e:
            if not ctx.enabled:
                raise
            problem = str(e)
    # Every rank learns the path, or the problem, so all of them stop with one line.
    problem = distributed.broadcast_text(problem, ctx)
    if problem:
        raise DataError(problem)
    path = distributed.broadcast_text(path, ctx)  # the other ranks open what rank 0 built
    return dataset if dataset is not None else load_dataset(Path(path))


def _run(
    model_config: GPTConfig,
    train_config: TrainConfig,
    dataset: Dataset,
    run_dir: Path,
    resume: Snapshot | None,
    stop_at: int | None,
    ctx: distributed.DistContext,
    tensorboard: Path | None,
    started: float,
    start: Start | None = None,
) -> int:
    """Train with the dashboard and the stop signals; the exit code. TensorBoard events
    go to tensorboard/<run name>, so one --tensorboard DIR holds many runs side by side.
    A second Ctrl-C before a new run's first save leaves no run behind: its directory,
    holding only metrics.jsonl, is removed (see `minigpt.training.runs`)."""
    board = tensorboard / run_dir.name if tensorboard is not None else None
    console = stdout()
    reporter = RichReporter(console) if console.is_terminal else PlainReporter(console)
    made_here = resume is None and not run_dir.exists()  # the run makes its directory
    result = None
    try:
        notify = reporter.notice if ctx.is_main else (lambda message: None)
        with GracefulStop(notify) as stop:
            guarded = ClosedOutputGuard(reporter, stop)
            result = train(
                model_config, train_config, dataset, run_dir, guarded,
                resume=resume, should_stop=stop, stop_at=stop_at, ctx=ctx, tensorboard=board,
                started=started, start=start,
            )  # fmt: skip
    except KeyboardInterrupt:  # a second Ctrl-C: stopped at once, without a save
        if not (resume is None and ctx.is_main and discard_unsaved_run(run_dir, made_here)):
            raise
    finally:
        with contextlib.suppress(BrokenPipeError):  # stdout is closed: nothing to give back
            reporter.close()
    if result is None:  # said here: Typer would turn the KeyboardInterrupt into a silent 130
        stderr().print(NOTHING_SAVED, markup=False)
        return EXIT_INTERRUPTED
    return EXIT_INTERRUPTED if result.stopped == StopReason.INTERRUPTED else 0


def process_age() -> float:
    """Seconds since this process started, from Linux's /proc (0.0 where it does not
    say): the interpreter's start and the imports come before any line of minigpt runs."""
    try:
        with open_regular(Path("/proc/self/stat")) as f:
            stat = f.read(4096).decode("ascii", "replace")
        with open_regular(Path("/proc/uptime")) as f:
            uptime = float(f.read(256).split()[0])
        ticks = int(stat.rsplit(")", 1)[1].split()[19])  # field 22, starttime: clock ticks
        return max(0.0, uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return 0.0
