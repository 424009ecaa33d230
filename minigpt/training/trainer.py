"""The training loop: `train()` runs one run, new or resumed from a snapshot, and reports
its progress to a `Reporter` (the CLI draws it); it never prints.

The loop hands each step to `TrainStep` (micro-batches, gradients, a skipped step when
the loss or gradient is not finite), then asks the `MetricsProcessor`, the `Evaluator`
and the `Checkpointer` whether it is time to log, evaluate or save, and hands them the
work. A stop request (Ctrl-C, SIGTERM, `stop_at`) ends the run after the current step
with `latest/` saved; a run that reaches its limit ends with a pass over the whole
validation split.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

from minigpt.checkpoint import Snapshot
from minigpt.config import GPTConfig, TrainConfig
from minigpt.data.dataset import Dataset
from minigpt.fileio import PathLike
from minigpt.training.checkpointer import Checkpointer, check_same_run
from minigpt.training.compiling import StepClock
from minigpt.training.distributed import DistContext, all_reduce_sum
from minigpt.training.evaluate import Evaluator
from minigpt.training.init_from import Start
from minigpt.training.metrics import MetricsProcessor
from minigpt.training.optim import lr_at, run_progress, time_reserve
from minigpt.training.precision import trained_in
from minigpt.training.reporting import (
    Reporter,
    RunInfo,
    SilentReporter,
    StopReason,
    TrainResult,
)
from minigpt.training.setup import build_setup, describe_run
from minigpt.training.state import TrainState, state_from_json
from minigpt.training.step import TrainStep
from minigpt.training.tensorboard import check_tensorboard


def train(
    model_config: GPTConfig,
    train_config: TrainConfig,
    dataset: Dataset,
    run_dir: PathLike,
    reporter: Reporter | None = None,
    *,
    resume: Snapshot | None = None,
    should_stop: Callable[[], bool] | None = None,
    stop_at: int | None = None,
    ctx: DistContext | None = None,
    tensorboard: PathLike | None = None,
    started: float | None = None,
    start: Start | None = None,
) -> TrainResult:
    """Train a model on `dataset` into `run_dir`, or continue the run saved in `resume`
    (`read_snapshot(run_dir, train_state=True)`). A new run starts from random weights,
    or from `start`'s (`minigpt.training.init_from`), which it evaluates first.

    A time budget (`train_config.time_budget`) is the wall time from `started` (a
    `time.perf_counter()` reading; `minigpt train` passes its process's start; by
    default now) to the end, the final evaluation included: the schedule fits what is
    left after start-up and the final pass (timed on one batch at the start), and the
    final pass stops when its longest share of the budget runs out.

    `should_stop` is polled after every step (a signal handler sets it); `stop_at`
    ends the run after that step. Both save `latest/` first. `tensorboard`: a directory
    that gets the rows of metrics.jsonl as TensorBoard event files too.
    """
    started = time.perf_counter() if started is None else started
    ctx = ctx or DistContext()
    run_dir = Path(run_dir)
    if tensorboard is not None:
        check_tensorboard()
        tensorboard = Path(tensorboard)
    if resume is not None:
        check_same_run(resume, model_config, dataset)
        start = None
    trainer = Trainer(model_config, train_config, dataset, run_dir, ctx, resume, start)
    reporter = reporter if reporter is not None and ctx.is_main else SilentReporter()
    return trainer.train(reporter, should_stop or (lambda: False), stop_at, tensorboard, started)


def done_in(resume: Snapshot | None) -> tuple[int, float]:
    """The steps and seconds of training a resumed run has behind it; (0, 0.0) for a
    new run or a snapshot without a training state (its restore says what is wrong)."""
    if resume is None or resume.train_state is None:
        return 0, 0.0
    state = state_from_json(resume.train_state.meta.get("state"), str(resume.path))
    return state.step, state.elapsed


class Trainer:
    """The components of one run, and the loop that hands them the work."""

    def __init__(
        self,
        model_config: GPTConfig,
        config: TrainConfig,
        dataset: Dataset,
        run_dir: Path,
        ctx: DistContext,
        resume: Snapshot | None = None,
        start: Start | None = None,
    ) -> None:
        began = trained_in(resume.meta) if resume is not None else None
        init_from = resume.meta.get("init_from") if resume is not None else None
        self.setup = build_setup(
            model_config, config, dataset, run_dir, ctx, began, start,
            init_from if isinstance(init_from, dict) else None, done_in(resume),
        )  # fmt: skip
        self.checkpointer = Checkpointer(self.setup)
        self.resumed = self.checkpointer.restore(resume) if resume is not None else None
        self.state = self.resumed.state if self.resumed else TrainState(world_size=ctx.world_size)
        self.evaluator = Evaluator(self.setup, self.resumed.last_val if self.resumed else None)
        self.step = TrainStep(self.setup)
        # what compiling costs and gains, kept for later runs' --compile auto
        self.clock = StepClock(self.setup.step_key, self.setup.compile, record=ctx.is_main)

    def train(
        self,
        reporter: Reporter,
        should_stop: Callable[[], bool],
        stop_at: int | None,
        tensorboard: Path | None = None,
        started: float | None = None,
    ) -> TrainResult:
        """Train until the step or time limit, a stop request, or patience runs out."""
        cfg, st = self.setup.config, self.state
        metrics = MetricsProcessor(cfg, reporter, self.setup.ctx.is_main, tensorboard)
        stopped: StopReason | None = None
        try:
            metrics.start(self._describe())
            self.setup.model.train()
            start = time.perf_counter() - st.elapsed
            if st.time_reserve is None:  # kept for the whole run, so resuming keeps the schedule
                st.time_reserve = self._time_reserve(started)
            reserve = st.time_reserve
            progress = run_progress(st.step, st.elapsed, cfg, reserve)
            if st.step == 0 and self.setup.init_from is not None:
                self._evaluate(metrics)  # where it starts: the source model's val loss
            while progress < 1.0 and stopped is None:
                if st.step == cfg.warmup_iters and st.warmup_end is None:
                    st.warmup_end = progress  # the decay spans the rest of the run
                lr = lr_at(st.step, progress, cfg, st.warmup_end)
                step_began = time.perf_counter()
                out = self.step(st, lr, should_stop, start)
                self.clock.tick(time.perf_counter() - step_began)
                progress = run_progress(st.step, st.elapsed, cfg, reserve)
                metrics.reporter.activity("train", progress)
                if metrics.should_log(st.step, progress, out.ok):
                    metrics.log_step(st, out.loss if out.ok else None, lr, out.grad_norm, progress)
                if self.evaluator.is_due(st.step, progress) and self._evaluate(metrics):
                    stopped = StopReason.EARLY_STOP
                if out.stop_requested:
                    stopped = StopReason.INTERRUPTED
                elif stop_at is not None and st.step >= stop_at:
                    stopped = StopReason.STOP_AT
                if stopped is not None or self.checkpointer.is_due(st.step, progress):
                    self.checkpointer.save_latest(st, self.evaluator.last_val)
            self.clock.finish()
            if stopped in (None, StopReason.EARLY_STOP):
                self._evaluate(metrics, final=True)
                self.checkpointer.save_latest(st, self.evaluator.last_val)
            if stopped is not None:
                metrics.log_stop(st.step, stopped)
        finally:
            metrics.close()
        result = self._result(stopped)
        reporter.end(result)
        return result

    def _time_reserve(self, started: float | None) -> float:
        """The seconds of the time budget kept off the loop, the same on every rank
        (each rank's start-up differs a little; the loop's end must not)."""
        cfg, ctx = self.setup.config, self.setup.ctx
        if cfg.time_budget is None:
            return 0.0
        startup = 0.0 if started is None else time.perf_counter() - started
        mine = time_reserve(cfg, startup, self.evaluator.final_pass_seconds())
        return all_reduce_sum([mine], ctx)[0] / ctx.world_size

    def _evaluate(self, metrics: MetricsProcessor, final: bool = False) -> bool:
        """Evaluate, keep best/ up to date; True when patience has run out."""
        report = metrics.final_eval_progress if final else None
        info = self.evaluator.evaluate(self.state, final, report)
        if info.best:
            self.checkpointer.save_best(self.state, (info.val_loss, info.val_bpb))
        metrics.log_eval(info)
        return self.evaluator.out_of_patience(self.state)

    def _describe(self) -> RunInfo:
        resumed = self.resumed
        return describe_run(
            self.setup, self.step.tokens_per_step,
            resumed_step=resumed.step if resumed else None,
            changes=resumed.changes if resumed else None,
        )  # fmt: skip

    def _result(self, stopped: StopReason | None) -> TrainResult:
        st = self.state
        val_loss, val_bpb = self.evaluator.last_val or (None, None)
        return TrainResult(
            run_dir=self.setup.run_dir,
            steps=st.step,
            elapsed=st.elapsed,
            val_loss=val_loss,
            val_bpb=val_bpb,
            tokens_per_s=st.tokens / max(st.elapsed, 1e-9),
            stopped=stopped,
            skipped_steps=st.skipped_steps,
        )
