"""`--compile auto`: what a run records about compiling, and the decision made from it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from minigpt import tuning
from minigpt.cli.train_settings import default_preset, new_settings
from minigpt.config import TrainConfig
from minigpt.data.dataset import Dataset
from minigpt.errors import TrainingError
from minigpt.presets import DEFAULT_PRESET, GPU_PRESET
from minigpt.training.compiling import (
    LONG_RUN_S,
    STEADY_STEPS,
    TIMED_STEPS,
    Limits,
    StepClock,
    choose_run_compile,
    compile_key,
    compile_pays,
)
from minigpt.training.trainer import train
from minigpt.tuning import Measurement, SpeedCache
from tests.conftest import tiny_config

CPU = torch.device("cpu")
# As measured on an H200 for the GPU default: 17 s to compile, steps 22 ms eager, 14 compiled.
H200 = {"eager": 0.022, "compiled": 0.014, "compile": 17.0}


@pytest.mark.parametrize(
    ("limits", "pays"),
    [
        (dict(time_budget=20.0), False),  # the compile alone nearly fills the budget
        (dict(time_budget=600.0), True),
        (dict(time_budget=10.0), False),  # shorter than the compile
        (dict(max_iters=600), False),  # 17 s + 8.4 s against 13.2 s eager
        (dict(max_iters=20_000), True),
        (dict(max_iters=20_000, time_budget=20.0), False),  # every limit must pay
        (dict(max_iters=600, time_budget=600.0), False),
    ],
)
def test_compiling_pays_only_when_the_steps_saved_outweigh_the_compile(
    limits: dict, pays: bool
) -> None:
    config = TrainConfig(**{"max_iters": None, **limits})
    assert compile_pays(H200, Limits.left(config)) is pays


def test_a_resumed_run_decides_on_what_it_has_left() -> None:
    config = TrainConfig(max_iters=20_000, time_budget=None)
    assert compile_pays(H200, Limits.left(config))
    assert not compile_pays(H200, Limits.left(config, step=19_000, elapsed=400.0))
    budget = TrainConfig(max_iters=None, time_budget=600.0)
    assert Limits.left(budget, step=10, elapsed=590.0) == Limits(10.0, None)
    assert not compile_pays(H200, Limits.left(budget, step=10, elapsed=590.0))


def test_a_gain_inside_the_margin_does_not_pay() -> None:
    slight = {"eager": 0.0100, "compiled": 0.0097, "compile": 0.001}  # 1.03x: under 5%
    assert not compile_pays(slight, Limits(None, 10**6))


def _key(config: TrainConfig) -> dict:
    return compile_key(CPU, tiny_config(), config, "fp32")


def _choose(config: TrainConfig, cache: Path) -> tuple[bool, str]:
    return choose_run_compile(CPU, _key(config), config.compile, Limits.left(config), cache)


def _cached(tmp_path: Path, config: TrainConfig, seconds: dict[str, float]) -> None:
    SpeedCache(tmp_path).put(_key(config), Measurement(seconds))


def test_auto_compiles_from_the_measurements_and_says_why(tmp_path: Path) -> None:
    long, short = TrainConfig(max_iters=20_000), TrainConfig(max_iters=600)
    _cached(tmp_path, long, H200)  # the key has no step count: both runs read it
    chosen, why = _choose(long, tmp_path)
    assert chosen and why == (
        "torch.compile (compiling this model took 17 s here and its steps ran 1.57x the "
        "eager speed, measured earlier: it pays in 20000 steps)"
    )
    chosen, why = _choose(short, tmp_path)
    assert not chosen and why.startswith("eager (") and "would not pay in 600 steps" in why


def test_auto_without_a_compiled_measurement_compiles_only_long_budgets(tmp_path: Path) -> None:
    steps = TrainConfig(max_iters=10**6, time_budget=None)
    _cached(tmp_path, steps, {"eager": 0.02})  # eager runs alone say nothing of compiling
    chosen, why = _choose(steps, tmp_path)
    assert not chosen and "not measured yet" in why and "--compile on" in why
    short = TrainConfig(max_iters=None, time_budget=LONG_RUN_S - 1)
    assert not _choose(short, tmp_path)[0]
    long = TrainConfig(max_iters=None, time_budget=LONG_RUN_S)
    chosen, why = _choose(long, tmp_path)
    assert chosen and why.endswith("not measured yet: this run measures it)")


def test_auto_stays_eager_on_a_cpu_without_a_cpp_compiler(tmp_path: Path) -> None:
    from torch._inductor import config as inductor

    config = TrainConfig(max_iters=20_000)
    _cached(tmp_path, config, H200)  # measured to pay, were there a compiler
    assert _choose(config, tmp_path)[0]
    with inductor.patch({"cpp.cxx": (str(tmp_path / "no-such-c++"),)}):
        chosen, why = _choose(config, tmp_path)
    assert not chosen and "no" in why and "install g++ or set CXX" in why


@pytest.mark.parametrize("asked", ["on", "off"])
def test_on_and_off_are_obeyed_whatever_was_measured(tmp_path: Path, asked: str) -> None:
    config = TrainConfig(compile=asked)
    _cached(tmp_path, config, H200)
    chosen, why = _choose(config, tmp_path)
    assert chosen is (asked == "on") and why.endswith("as asked")


def test_the_key_holds_what_else_a_step_time_depends_on() -> None:
    adamw, muon = _key(TrainConfig()), _key(TrainConfig(optimizer="muon"))
    ranks = compile_key(CPU, tiny_config(), TrainConfig(), "fp32", world_size=2)
    assert len({str(k) for k in (adamw, muon, ranks)}) == 3


def _ticked(tmp_path: Path, key: dict, compiled: bool, steps: list[float]) -> StepClock:
    """A clock that has timed `steps` (seconds each)."""
    clock = StepClock(key, compiled=compiled, cache=tmp_path)
    for seconds in steps:
        clock.tick(seconds)
    return clock


def test_the_clock_keeps_the_median_step_and_the_first_steps_excess(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tuning.CoreWatch, "verdict", lambda self: None)  # a quiet machine
    key = _key(TrainConfig())
    _ticked(tmp_path, key, False, [0.5] + [0.02] * TIMED_STEPS)
    assert SpeedCache(tmp_path).get(key).seconds == {"eager": 0.02}
    late = [50.0]  # the last comes late
    _ticked(tmp_path, key, True, [9.01, 0.03] + [0.01] * (TIMED_STEPS - 1) + late)
    kept = SpeedCache(tmp_path).get(key).seconds
    assert kept == pytest.approx({"eager": 0.02, "compiled": 0.01, "compile": 9.0})


def test_the_clock_keeps_the_steady_step_time_once_the_run_goes_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tuning.CoreWatch, "verdict", lambda self: None)
    key = _key(TrainConfig())
    clock = _ticked(tmp_path, key, True, [5.04] + [0.04] * TIMED_STEPS)  # slowly at first ...
    assert SpeedCache(tmp_path).get(key).seconds == pytest.approx(
        {"compiled": 0.04, "compile": 5.0}
    )
    for seconds in [0.02] * (STEADY_STEPS - TIMED_STEPS) + [9.0] * 3:  # ... then faster
        clock.tick(seconds)
    clock.finish()  # the steps after the steady figure are not timed
    assert SpeedCache(tmp_path).get(key).seconds == pytest.approx(
        {"compiled": 0.02, "compile": 5.02}
    )


def test_a_run_that_ends_early_keeps_the_median_of_all_its_steps(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tuning.CoreWatch, "verdict", lambda self: None)
    key = _key(TrainConfig())
    clock = _ticked(tmp_path, key, False, [0.5] + [0.04] * TIMED_STEPS + [0.02] * (TIMED_STEPS + 2))
    assert SpeedCache(tmp_path).get(key).seconds == {"eager": 0.04}
    clock.finish()
    assert SpeedCache(tmp_path).get(key).seconds == {"eager": 0.02}
    short = _ticked(tmp_path, _key(TrainConfig(batch_size=2)), False, [0.04] * TIMED_STEPS)
    short.finish()  # too few steps to say anything
    assert SpeedCache(tmp_path).get(_key(TrainConfig(batch_size=2))) is None


def test_a_clock_on_a_busy_cpu_keeps_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tuning.CoreWatch, "verdict", lambda self: "the machine is busy")
    key = _key(TrainConfig())
    clock = StepClock(key, compiled=False, cache=tmp_path)
    for _ in range(TIMED_STEPS + 5):
        clock.tick(0.01)
    clock.finish()
    assert SpeedCache(tmp_path).get(key) is None


def test_a_clock_that_does_not_record_keeps_nothing(tmp_path: Path) -> None:
    key = _key(TrainConfig())
    clock = StepClock(key, compiled=False, cache=tmp_path, record=False)  # a rank other than 0
    for _ in range(TIMED_STEPS + 1):
        clock.tick(0.01)
    assert SpeedCache(tmp_path).get(key) is None


def test_a_training_run_records_its_eager_step_time(
    char_dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tuning.CoreWatch, "verdict", lambda self: None)  # tests share cores
    model = tiny_config(vocab_size=char_dataset.tokenizer.vocab_size)
    config = TrainConfig(max_iters=TIMED_STEPS + 5, batch_size=2, eval_interval=100,
                         sample_every=0, compile="auto", precision="fp32")  # fmt: skip
    result = train(model, config, char_dataset, tmp_path / "run")
    assert result.steps == TIMED_STEPS + 5
    store = SpeedCache(os.environ["MINIGPT_CACHE_DIR"])
    kept = store.get(compile_key(CPU, model, config, "fp32"))
    assert kept is not None and set(kept.seconds) == {"eager"} and kept.seconds["eager"] > 0


def test_a_new_run_takes_the_gpu_default_only_on_a_cuda_gpu() -> None:
    assert default_preset("cpu") == DEFAULT_PRESET == "small"
    expected = GPU_PRESET if torch.cuda.is_available() else DEFAULT_PRESET
    assert default_preset(None) == expected
    settings = new_settings(None, {}, {}, {"device": "cpu"})
    train = settings.train
    assert (settings.model.n_layer, train.batch_size, train.optimizer) == (4, 24, "muon")
    assert train.min_lr_ratio == 0.0
    medium = new_settings(GPU_PRESET, {}, {}, {})
    assert (medium.model.n_layer, medium.model.n_embd, medium.train.batch_size) == (6, 384, 64)
    assert medium.train.optimizer == "adamw"
    given = new_settings(None, {}, {}, {"device": "cpu", "optimizer": "adamw"})
    assert given.train.optimizer == "adamw"  # an option given replaces the preset's


def test_a_compile_that_fails_ends_the_run_with_one_line(
    char_dataset: Dataset, tmp_path: Path
) -> None:
    from torch._inductor import config as inductor

    model = tiny_config(vocab_size=char_dataset.tokenizer.vocab_size)
    config = TrainConfig(max_iters=3, batch_size=2, eval_interval=100, sample_every=0,
                         compile="on", precision="fp32")  # fmt: skip
    no_compiler = {"cpp.cxx": (str(tmp_path / "no-such-c++"),), "fx_graph_cache": False}
    with inductor.patch(no_compiler), pytest.raises(TrainingError) as failed:
        train(model, config, char_dataset, tmp_path / "run")
    message = str(failed.value)
    assert "torch.compile failed here" in message and message.endswith("--compile off")
    assert "\n" not in message
