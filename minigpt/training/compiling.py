"""Whether a run trains a torch.compile'd model (`--compile auto`), from what compiling
cost and gained on this machine and shape before.

torch.compile traces the model and generates its kernels the first time it runs. On an
H200 that took 17 s for a 6-layer, 384-wide model, whose steps then ran 1.57x faster;
but in a 20-second budget the compiled runs ended after a single step (in 28 to 37 s),
where the eager model trained 536 steps to 2.09 bits per byte
(benchmarks/budget_quality.py). On a 2-core CPU (AMD EPYC) compiling the default model
took 12 s, or 2.5 s with inductor's on-disk cache warm, and its steps then ran about
1.3x faster (35 ms against 45 ms). Whether compiling pays depends on how long the
run is, the machine and the shape, so the trainer records, per machine, model, batch,
precision, optimizer and process count (the speed cache, `minigpt.tuning`):
an eager run its seconds per step, a compiled run its compile time and seconds per
step (`StepClock`). `--compile auto` compiles when both are known and the run is long
enough that the steps saved outweigh the compile time, by `MARGIN`:

- B seconds of time budget left: (B - compile) / compiled_step > (1 + MARGIN) B / eager_step;
- N steps left: compile + N compiled_step < N eager_step / (1 + MARGIN).

Until a compiled run has been measured, auto compiles only runs with a time budget of
`LONG_RUN_S` or more (and no step limit), where the compile time is a small share
whatever it turns out to be, and which measure it for the runs after them; a
`--compile on` run of `TIMED_STEPS` + 1 steps or more measures it too. Rank 0 decides
for every rank.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict
from typing import Any, NamedTuple

import torch

from minigpt import tuning
from minigpt.config import GPTConfig, TrainConfig
from minigpt.fileio import PathLike
from minigpt.training.distributed import DistContext, broadcast_text
from minigpt.tuning import MARGIN, Measurement, SpeedCache, cache_dir, machine_fingerprint

LONG_RUN_S = 120.0  # unmeasured, a run with a budget this long compiles
TIMED_STEPS = 20  # steps after the first whose median is a run's first seconds per step
STEADY_STEPS = 500  # ... and up to this many, its steady seconds per step


def compile_key(
    device: torch.device,
    model: GPTConfig,
    config: TrainConfig,
    precision: str,
    world_size: int = 1,
) -> dict[str, Any]:
    """What compile timings are kept under: the machine, the model, the step's shape and
    what else a step's time depends on (the optimizer, the processes it is shared by)."""
    return {
        "what": "training step, eager and compiled",
        "machine": machine_fingerprint(device, torch.get_num_threads()),
        "model": asdict(model),
        "batch": [config.batch_size, config.grad_accum, model.block_size],
        "precision": precision,  # a `precision.RUN_PRECISIONS` name
        "optimizer": config.optimizer,
        "world_size": world_size,
    }


class Limits(NamedTuple):
    """What is left of a run: seconds of its time budget, steps (None: no such limit)."""

    seconds: float | None
    steps: int | None

    @classmethod
    def left(cls, config: TrainConfig, step: int = 0, elapsed: float = 0.0) -> Limits:
        """The limits of `config` less `step` steps and `elapsed` seconds already done
        (a resumed run's)."""
        budget, steps = config.time_budget, config.max_iters
        return cls(
            None if budget is None else max(budget - elapsed, 0.0),
            None if steps is None else max(steps - step, 0),
        )

    def describe(self) -> str:
        """'a 20 s budget', '600 steps', or both joined by 'or'."""
        parts = []
        if self.seconds is not None:
            parts.append(f"a {self.seconds:.0f} s budget")
        if self.steps is not None:
            parts.append(f"{self.steps} steps")
        return " or ".join(parts)


def choose_run_compile(
    device: torch.device,
    key: dict[str, Any],
    requested: str,
    limits: Limits,
    cache: PathLike | None = None,
) -> tuple[bool, str]:
    """Whether to compile the training model whose step timings are kept under `key`
    (`compile_key`) for a run with `limits` left, and a line saying why."""
    if requested == "on":
        return True, "torch.compile as asked"
    if requested == "off":
        return False, "eager (no torch.compile) as asked"
    chosen, why = auto_compile(key, limits, cache)
    if chosen and device.type == "cpu" and not has_cpp_compiler():  # checked only then: ~1 s
        return False, (
            "eager (torch.compile builds its CPU kernels with a C++ compiler and none was "
            "found; install g++ or set CXX)"
        )
    return chosen, why


def auto_compile(
    key: dict[str, Any], limits: Limits, cache: PathLike | None = None
) -> tuple[bool, str]:
    """What `--compile auto` chooses from the timings kept under `key`, and why."""
    times = SpeedCache(cache_dir(cache)).get(key)
    seconds = times.seconds if times is not None else {}
    if {"eager", "compiled", "compile"} <= seconds.keys():
        facts = (
            f"compiling this model took {seconds['compile']:.0f} s here and its steps ran "
            f"{seconds['eager'] / seconds['compiled']:.2f}x the eager speed, measured earlier"
        )
        if compile_pays(seconds, limits):
            return True, f"torch.compile ({facts}: it pays in {limits.describe()})"
        return False, f"eager ({facts}: it would not pay in {limits.describe()})"
    long_budget = limits.seconds is not None and limits.seconds >= LONG_RUN_S
    if long_budget and limits.steps is None:
        return True, (
            f"torch.compile (a budget of {LONG_RUN_S / 60:.0f} min or more; what compiling "
            "costs and gains here is not measured yet: this run measures it)"
        )
    return False, (
        "eager (what compiling this model costs and gains here is not measured yet; "
        f"unmeasured, auto compiles only budgets of {LONG_RUN_S / 60:.0f} min or more; a "
        f"--compile on run of {TIMED_STEPS + 1} steps or more measures it)"
    )


def has_cpp_compiler() -> bool:
    """Whether inductor, torch.compile's backend, finds the C++ compiler it builds CPU
    kernels with (g++, or $CXX). Importing inductor to ask takes about a second."""
    from torch._inductor import cpp_builder, exc  # torch.compile's own search

    try:
        cpp_builder.get_cpp_compiler()
    except exc.InvalidCxxCompiler:
        return False
    return True


def choose_for_every_rank(
    device: torch.device, key: dict[str, Any], requested: str, limits: Limits, ctx: DistContext
) -> tuple[bool, str]:
    """`choose_run_compile` on rank 0, told to the others: every rank alike."""
    text = ""
    if ctx.is_main:
        chosen, why = choose_run_compile(device, key, requested, limits)
        text = f"{int(chosen)}\n{why}"
    chosen, _, why = broadcast_text(text, ctx).partition("\n")
    return chosen == "1", why


def compile_pays(seconds: dict[str, float], limits: Limits) -> bool:
    """Whether compiling trains more steps in the budget, and the steps sooner, than the
    eager model by more than MARGIN: under every limit the run has."""
    eager, compiled, cost = seconds["eager"], seconds["compiled"], seconds["compile"]
    pays = []
    if (budget := limits.seconds) is not None:
        pays.append(budget > cost and (budget - cost) / compiled > (1 + MARGIN) * budget / eager)
    if (steps := limits.steps) is not None:
        pays.append(cost + steps * compiled < steps * eager / (1 + MARGIN))
    return bool(pays) and all(pays)


class StepClock:
    """Times a run's steps and keeps, in the speed cache, the seconds per step (the
    median of the steps after the first) and, for a compiled run, the compile time (the
    first step's excess over that median). It keeps a first figure after `TIMED_STEPS`
    steps, for runs that end soon, then the steady one: a run's first hundred or so
    steps ran up to 1.2x slower than its later ones on a 2-core CPU, and a compiled
    run's more so than an eager one's, so a ratio from the first steps alone misjudged
    compiling (0.91x where the run went on at 1.3x). The steady figure is the median of
    up to `STEADY_STEPS` steps, kept when that many are timed or the run ends
    (`finish`). Measurements already kept for the other mode stay. A CPU run keeps
    nothing when other work kept the cores busy while its steps were timed
    (`tuning.CoreWatch`, the rule every measurement follows); a GPU's step does not
    share the cores that way."""

    def __init__(
        self,
        key: dict[str, Any],
        compiled: bool,
        cache: PathLike | None = None,
        record: bool = True,
    ) -> None:
        self.key, self.compiled, self.record = key, compiled, record
        self.on_cpu = key["machine"]["device"] == "cpu"  # where its threads share the cores
        self.store = SpeedCache(cache_dir(cache))
        self.seconds: list[float] = []
        self.kept = 0  # how many of `seconds` the last figure kept came from
        self.watch: tuning.CoreWatch | None = None  # over the timed steps, on a CPU

    def tick(self, step_seconds: float) -> None:
        """One step took `step_seconds`; after enough of them, keep the figures."""
        if not self.record or len(self.seconds) > STEADY_STEPS:
            return
        self.seconds.append(step_seconds)
        if len(self.seconds) == 1 and self.on_cpu:
            self.watch = tuning.CoreWatch()
        elif len(self.seconds) in (TIMED_STEPS + 1, STEADY_STEPS + 1):
            self._keep()

    def finish(self) -> None:
        """The run's steps are done: keep the median of all those timed, if that is
        more than the figure kept last."""
        if self.record and TIMED_STEPS < self.kept < len(self.seconds):
            self._keep()

    def _keep(self) -> None:
        self.kept = len(self.seconds)
        if self.watch is not None and self.watch.verdict() is not None:
            return  # other work's share of the cores would mislead later decisions
        per_step = statistics.median(self.seconds[1:])
        kept = self.store.get(self.key)
        seconds = dict(kept.seconds) if kept is not None else {}
        if self.compiled:
            seconds["compiled"] = per_step
            seconds["compile"] = max(self.seconds[0] - per_step, 1e-3)
        else:
            seconds["eager"] = per_step
        self.store.put(self.key, Measurement(seconds))
