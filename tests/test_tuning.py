"""Speed choices made by measurement (minigpt.tuning): the decisions driven by a fake
timer, the cache of measurements, explicit choices, and that every matmul path
generates what the plain model does."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import torch

from minigpt import tuning
from minigpt.checkpoint import read_snapshot
from minigpt.cli import main
from minigpt.config import GPTConfig, SampleConfig, TrainConfig
from minigpt.data.dataset import Dataset
from minigpt.device import matmul_peak, peak_key
from minigpt.errors import ConfigError
from minigpt.generation.generate import generate
from minigpt.generation.inference import (
    Bf16Linear,
    Int8Linear,
    PackedLinear,
    prepare_for_inference,
)
from minigpt.kvcache import KVCache
from minigpt.model import GPT
from minigpt.training.distributed import DistContext
from minigpt.training.precision import (
    CPU_CHOICES,
    LABELS,
    MATMUL_ATTENTION_BYTES,
    Autocast,
    choose_run_precision,
    computing_in,
    cpu_choices,
    keeps,
    measure_precision,
    trained_in,
)
from minigpt.training.reporting import RunInfo, SilentReporter
from minigpt.training.trainer import train
from minigpt.tuning import (
    MARGIN,
    BestOfTimer,
    Measurement,
    SpeedCache,
    cache_dir,
    machine_fingerprint,
)
from tests.conftest import tiny_config

MACHINE_BUSY = tuning.machine_busy  # the real one (the fixture below stands in for it)


class FakeTimer:
    """Made-up seconds per call for each candidate (one not named: 10 s, never the
    fastest); counts how often it was asked."""

    def __init__(self, **seconds: float) -> None:
        self.seconds = seconds
        self.calls = 0

    def __call__(self, candidates) -> dict[str, float]:
        self.calls += 1
        for fn in candidates.values():
            fn()  # each way really runs once, as the real timer's warm-up does
        return {name: self.seconds.get(name, 10.0) for name in candidates}


@pytest.fixture(autouse=True)
def quiet_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests may share a busy machine: their lines should not say so."""
    monkeypatch.setattr(tuning, "machine_busy", lambda: None)  # measure, busy or not


def tiny_model(**overrides) -> GPT:
    torch.manual_seed(0)
    return GPT(tiny_config(**overrides))


# ---------------------------------------------------------------------------------
# Training precision.


def test_bf16_is_chosen_when_the_timer_finds_it_faster(tmp_path: Path) -> None:
    decision = measure_precision(tiny_model(), 4, timer=FakeTimer(fp32=1.0, bf16=0.5),
                                 cache=tmp_path)  # fmt: skip
    assert decision.choice == "bf16" and not decision.cached
    assert "bf16 autocast 2.00x fp32" in decision.why and "training step" in decision.why


def test_fp32_is_kept_when_bf16_is_slower_or_within_the_margin(tmp_path: Path) -> None:
    slower = measure_precision(tiny_model(), 4, timer=FakeTimer(fp32=1.0, bf16=2.4),
                               cache=tmp_path / "a")  # fmt: skip
    assert slower.choice == "fp32" and "bf16 autocast 0.42x fp32" in slower.why
    barely = FakeTimer(fp32=1.0, bf16=1 / (1 + MARGIN * 0.8))  # 4% faster: noise
    assert measure_precision(tiny_model(), 4, timer=barely, cache=tmp_path / "b").choice == "fp32"
    enough = FakeTimer(fp32=1.0, bf16=1 / (1 + MARGIN * 1.2))  # 6% faster
    assert measure_precision(tiny_model(), 4, timer=enough, cache=tmp_path / "c").choice == "bf16"


def test_the_run_precision_says_what_was_measured_and_what_was_asked(tmp_path: Path) -> None:
    timer = FakeTimer(fp32=1.0, bf16=3.0)
    chosen = choose_run_precision(tiny_model(), "auto", 4, DistContext(), timer=timer,
                                  cache=tmp_path)  # fmt: skip
    assert chosen.dtype == torch.float32
    assert chosen.line.startswith("fp32 (measured on this model's training")
    for asked, want in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        chosen = choose_run_precision(tiny_model(), asked, 4, DistContext(), timer=timer,
                                      cache=tmp_path)  # fmt: skip
        assert chosen.dtype == want and chosen.attention == "fused" and "as asked" in chosen.line
    assert timer.calls == 1  # an explicit choice measures nothing


@pytest.mark.parametrize("fastest", ["bf16-fp32-attention", "bf16-matmul-attention"])
def test_the_ways_of_attending_in_bf16_are_candidates(tmp_path: Path, fastest: str) -> None:
    seconds = {"fp32": 1.0, "bf16": 0.8, "bf16-fp32-attention": 0.7, "bf16-matmul-attention": 0.7}
    timer = FakeTimer(**(seconds | {fastest: 0.6}))
    decision = measure_precision(tiny_model(), 4, timer=timer, cache=tmp_path)
    assert decision.choice == fastest
    assert f"{LABELS[fastest]} 1.67x fp32" in decision.why
    assert "bf16 autocast 1.25x" in decision.why
    key = json.loads(next(tmp_path.glob("speed-*.json")).read_text())["key"]
    assert key["candidates"] == list(CPU_CHOICES)


def test_matmul_attention_is_measured_only_where_its_weights_fit() -> None:
    small = tiny_model()  # 2 layers, 2 heads, 32 positions
    assert cpu_choices(small, 4) == CPU_CHOICES
    long = GPT(tiny_config(block_size=1024, n_layer=12, n_head=8, n_embd=64))
    assert 2 * 12 * 8 * 8 * 1024**2 > MATMUL_ATTENTION_BYTES  # 1.6 GB kept at batch 8
    assert cpu_choices(long, 8) == ("fp32", "bf16", "bf16-fp32-attention")
    assert cpu_choices(long, 1) == CPU_CHOICES


def test_computing_in_a_precision_restores_the_models_attention() -> None:
    model = tiny_model()
    with computing_in(model, "bf16-fp32-attention"):
        assert model.attention == "fp32" and torch.is_autocast_enabled("cpu")
    assert model.attention == "fused" and not torch.is_autocast_enabled("cpu")
    model.set_attention("matmul")
    with computing_in(model, "fp32"):
        assert model.attention == "fused"
    assert model.attention == "matmul"
    with pytest.raises(ValueError, match="unknown attention way"):
        model.set_attention("flash")


def test_fp32_attention_computes_attention_in_fp32_under_bf16_autocast() -> None:
    model = tiny_model()
    x = torch.randint(0, model.config.vocab_size, (2, 16))
    plain = model(x)
    model.set_attention("fp32")
    assert torch.equal(model(x), plain)  # without autocast nothing changes
    attn = model.h[0].attn
    seen: list[torch.dtype] = []
    original = attn._sdpa
    attn._sdpa = lambda q, *rest: seen.append(q.dtype) or original(q, *rest)  # type: ignore[method-assign]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(x)
        mixed.float().sum().backward()
    assert seen == [torch.float32] and mixed.dtype == torch.bfloat16
    assert torch.allclose(mixed.float(), plain, atol=0.05)
    assert all(p.grad is not None and p.grad.isfinite().all() for p in model.parameters())


@pytest.mark.parametrize("n_kv_head", [2, 1], ids=["mha", "gqa"])
def test_matmul_attention_computes_what_the_fused_kernel_does(n_kv_head: int) -> None:
    model = tiny_model(n_kv_head=n_kv_head)
    x = torch.randint(0, model.config.vocab_size, (3, 20))
    fused = model(x)
    fused.square().sum().backward()
    fused_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model.set_attention("matmul")
    calls = []
    original = model.h[0].attn._sdpa
    model.h[0].attn._sdpa = lambda *a: calls.append(a) or original(*a)  # type: ignore[method-assign]
    matmul = model(x)
    matmul.square().sum().backward()
    assert not calls  # the fused kernel was not used
    assert torch.allclose(matmul, fused, atol=1e-5)
    for p, want in zip(model.parameters(), fused_grads, strict=True):
        assert torch.allclose(p.grad, want, atol=1e-5, rtol=1e-4)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = model(x)
    assert mixed.dtype == torch.bfloat16 and torch.allclose(mixed.float(), fused, atol=0.05)
    with torch.no_grad():  # after a cached prefix it attends with the fused kernel
        cache = KVCache(model.config, batch_size=3)
        model(x[:, :12], kv_cache=cache)
        chunk = model(x[:, 12:], kv_cache=cache)
    assert len(calls) == 1 and torch.allclose(chunk, fused[:, 12:], atol=1e-5)


def test_measuring_leaves_the_random_state_and_the_gradients_alone(tmp_path: Path) -> None:
    model = tiny_model(dropout=0.5)
    before = torch.get_rng_state()
    measure_precision(model, 4, timer=FakeTimer(fp32=1.0, bf16=1.0), cache=tmp_path)
    assert torch.equal(torch.get_rng_state(), before)
    assert all(p.grad is None for p in model.parameters()) and model.training


def test_the_real_timer_ranks_candidates_within_its_budget() -> None:
    t0 = time.perf_counter()
    seconds = BestOfTimer(budget_s=0.2)({"quick": lambda: None,
                                         "slow": lambda: time.sleep(0.003)})  # fmt: skip
    assert seconds["quick"] < seconds["slow"] and seconds["slow"] >= 0.003
    assert time.perf_counter() - t0 < 1.0
    once = BestOfTimer(budget_s=0.01)({"long": lambda: time.sleep(0.02)})  # judged by one call
    assert once["long"] >= 0.02


# ---------------------------------------------------------------------------------
# The cache.


def test_a_second_decision_comes_from_the_cache_without_timing(tmp_path: Path) -> None:
    first = measure_precision(tiny_model(), 4, timer=FakeTimer(fp32=1.0, bf16=0.5), cache=tmp_path)
    timer = FakeTimer(fp32=9.0, bf16=9.0)
    again = measure_precision(tiny_model(), 4, timer=timer, cache=tmp_path)
    assert timer.calls == 0 and again.cached and again.choice == first.choice == "bf16"
    assert "measured earlier on this machine (cached)" in again.why
    assert json.loads(next(tmp_path.glob("speed-*.json")).read_text())["key"]["batch"] == [4, 32]


def test_the_matmul_peak_is_measured_once_per_machine(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setattr(tuning, "machine_busy", lambda: "other work keeps the cores busy")
    assert matmul_peak(cpu, torch.float32, tmp_path) > 0
    assert not list(tmp_path.glob("speed-*.json"))  # a busy machine's figure is not kept
    monkeypatch.setattr(tuning, "machine_busy", lambda: None)
    measured = matmul_peak(cpu, torch.float32, tmp_path)
    (file,) = tmp_path.glob("speed-*.json")
    assert json.loads(file.read_text())["key"]["what"] == "matmul peak"
    assert matmul_peak(cpu, torch.float32, tmp_path) == pytest.approx(measured)  # read back
    n = peak_key(cpu, torch.float32)["n"]
    SpeedCache(tmp_path).put(peak_key(cpu, torch.float32), Measurement({"matmul": 2 * n**3 / 1e9}))
    assert matmul_peak(cpu, torch.float32, tmp_path) == pytest.approx(1e9)  # not measured


@pytest.mark.parametrize(
    "damage",
    [b"{not json", b'{"format_version": 1}', b"[1, 2]", b"\xff\xfe", b" " * (1 << 20),
     b'{"format_version": 1, "key": null, "measured": {"seconds": {"fp32": -1}}}'],
    ids=["truncated", "no-key", "a-list", "not-utf8", "too-large", "negative"],
)  # fmt: skip
def test_a_damaged_cache_file_is_ignored_and_rewritten(tmp_path: Path, damage: bytes) -> None:
    measure_precision(tiny_model(), 4, timer=FakeTimer(fp32=1.0, bf16=0.5), cache=tmp_path)
    (file,) = tmp_path.glob("speed-*.json")
    file.write_bytes(damage)
    timer = FakeTimer(fp32=1.0, bf16=2.0)
    decision = measure_precision(tiny_model(), 4, timer=timer, cache=tmp_path)
    assert timer.calls == 1 and decision.choice == "fp32" and not decision.cached
    assert json.loads(file.read_text())["measured"] == {
        "seconds": {
            "fp32": 1.0,
            "bf16": 2.0,
            "bf16-fp32-attention": 10.0,
            "bf16-matmul-attention": 10.0,
        },
        "rejected": {},
    }


def test_a_stored_measurement_of_another_key_is_not_believed(tmp_path: Path) -> None:
    measure_precision(tiny_model(), 4, timer=FakeTimer(fp32=1.0, bf16=0.5), cache=tmp_path)
    (file,) = tmp_path.glob("speed-*.json")
    record = json.loads(file.read_text())
    record["key"]["batch"] = [99, 32]  # as if copied from another shape
    file.write_text(json.dumps(record))
    timer = FakeTimer(fp32=1.0, bf16=2.0)
    assert measure_precision(tiny_model(), 4, timer=timer, cache=tmp_path).choice == "fp32"


def test_a_cache_link_is_replaced_and_its_target_left_alone(tmp_path: Path) -> None:
    measure_precision(tiny_model(), 4, timer=FakeTimer(fp32=1.0, bf16=0.5), cache=tmp_path)
    (file,) = tmp_path.glob("speed-*.json")
    target = tmp_path / "precious.txt"
    target.write_text("mine")
    file.unlink()
    file.symlink_to(target)
    measure_precision(tiny_model(), 4, timer=FakeTimer(fp32=1.0, bf16=2.0), cache=tmp_path)
    assert target.read_text() == "mine" and not file.is_symlink()


def test_an_unwritable_cache_only_means_measuring_again(tmp_path: Path) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    for _ in range(2):
        timer = FakeTimer(fp32=1.0, bf16=0.5)
        assert measure_precision(tiny_model(), 4, timer=timer, cache=blocked / "x").choice == "bf16"
        assert timer.calls == 1


def test_a_busy_machine_is_not_measured_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    busy = "the machine is busy (1.9 of 2 cores taken by other work; ...)"
    monkeypatch.setattr(tuning, "machine_busy", lambda: busy)
    timer = FakeTimer(fp32=1.0, bf16=0.5, default=1.0, packed=0.5)
    decision = measure_precision(tiny_model(), 4, timer=timer, cache=tmp_path)
    assert decision.choice == "fp32" and timer.calls == 0 and not decision.cached
    assert decision.why == f"not measured, {busy}; a quieter run will measure"
    model = tiny_model()
    assert prepare_for_inference(model, timer=timer, cache=tmp_path).choice == "default"
    assert isinstance(model.lm_head, torch.nn.Linear) and not list(tmp_path.iterdir())
    monkeypatch.setattr(tuning, "machine_busy", lambda: None)  # quiet again: measured, kept
    assert measure_precision(tiny_model(), 4, timer=timer, cache=tmp_path).choice == "bf16"
    assert timer.calls == 1 and len(list(tmp_path.glob("speed-*.json"))) == 1


def test_the_cores_other_work_keeps_busy_are_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    ticks = iter([(1000, 800), (1100, 810)])  # 90% of the CPU time busy in the window
    monkeypatch.setattr(tuning, "_cpu_times", lambda: next(ticks))
    monkeypatch.setattr(tuning.os, "cpu_count", lambda: 4)
    monkeypatch.setattr(tuning.time, "process_time", lambda: 0.0)  # this process: idle
    torch_threads = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        assert "3.6 of 4 cores taken by other work" in (MACHINE_BUSY(0.01) or "")
        ticks = iter([(1000, 800), (1100, 880)])  # 20%: 0.8 cores, 3.2 free for 2 threads
        assert MACHINE_BUSY(0.01) is None
    finally:
        torch.set_num_threads(torch_threads)


def test_the_key_changes_with_the_shape_and_the_threads(tmp_path: Path) -> None:
    cache = SpeedCache(tmp_path)
    cpu = torch.device("cpu")
    key = {"machine": machine_fingerprint(cpu, 2), "model": {"block_size": 32}, "batch": [4, 32]}
    cache.put(key, Measurement({"fp32": 1.0}))
    assert cache.get(key) == Measurement({"fp32": 1.0})
    assert cache.get({**key, "machine": machine_fingerprint(cpu, 3)}) is None
    assert cache.get({**key, "batch": [8, 32]}) is None
    assert cache.get({**key, "model": {"block_size": 64}}) is None
    timer = FakeTimer(fp32=1.0, bf16=0.5)
    measure_precision(tiny_model(), 4, timer=timer, cache=tmp_path)
    measure_precision(tiny_model(block_size=16), 4, timer=timer, cache=tmp_path)
    assert timer.calls == 2


def test_the_cache_directory_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MINIGPT_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert cache_dir() == tmp_path / "xdg" / "minigpt"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert cache_dir() == Path.home() / ".cache" / "minigpt"
    monkeypatch.setenv("MINIGPT_CACHE_DIR", str(tmp_path / "mine"))
    assert cache_dir() == tmp_path / "mine" and cache_dir(tmp_path / "p") == tmp_path / "p"


# ---------------------------------------------------------------------------------
# The decode matmul path.


def greedy(model: GPT, prompt: torch.Tensor, n: int = 24) -> list[int]:
    config = SampleConfig(max_new_tokens=n, temperature=0.0)
    return [int(step.token[0]) for step in generate(model, prompt, config)]


@pytest.mark.parametrize(
    "seconds, chosen, layer",
    [(dict(default=1.0, packed=0.5, bf16=0.9, int8=0.8), "packed", PackedLinear),
     (dict(default=1.0, packed=0.9, bf16=0.5, int8=0.8), "bf16", Bf16Linear),
     (dict(default=1.0, packed=0.9, bf16=0.5, int8=0.3), "int8", Int8Linear),
     (dict(default=1.0, packed=0.97, bf16=1.5, int8=2.0), "default", torch.nn.Linear)],
)  # fmt: skip
def test_the_decode_path_is_the_fastest_measured(
    tmp_path: Path, seconds: dict, chosen: str, layer: type
) -> None:
    model = tiny_model()
    decision = prepare_for_inference(model, timer=FakeTimer(**seconds), cache=tmp_path)
    assert decision.choice == chosen and "decode step" in decision.why
    assert isinstance(model.lm_head, layer) and isinstance(model.h[0].mlp.c_fc, layer)
    timer = FakeTimer(**seconds)
    again = prepare_for_inference(tiny_model(), timer=timer, cache=tmp_path)
    assert again.choice == chosen and again.cached and timer.calls == 0


@pytest.mark.parametrize("path", ["default", "packed"])
def test_the_default_and_packed_paths_generate_the_plain_models_tokens(path: str) -> None:
    prompt = torch.randint(0, 64, (1, 5), generator=torch.Generator().manual_seed(1))
    plain = tiny_model()
    plain.eval()
    model = tiny_model()
    assert prepare_for_inference(model, path).why == "as asked"
    assert greedy(model, prompt) == greedy(plain, prompt)


def test_bf16_weights_stay_close_to_the_plain_model() -> None:
    idx = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    plain, model = tiny_model(), tiny_model()
    plain.eval()
    prepare_for_inference(model, "bf16")
    with torch.no_grad():
        want = plain(idx).log_softmax(-1)
        torch.testing.assert_close(model(idx).log_softmax(-1), want, atol=2e-2, rtol=0)
        assert model(idx[:, -1:]).dtype == torch.float32  # a decode step, in bf16 inside


@pytest.mark.parametrize("inputs", [16, 48, 768])
def test_the_int8_kernel_computes_what_its_dequantized_weights_do(inputs: int) -> None:
    """A decode step's rows go through PyTorch's int8 kernel, a long prefill's through
    fp32 from the weights dequantized: the same product to the kernel's bf16 output
    rounding, for any number of rows and outputs, one shape after another (a kernel that
    kept state from its first call would fail here)."""
    gen = torch.Generator().manual_seed(0)
    long = Int8Linear.KERNEL_ROWS + 1  # positions: past the kernel's rows
    for outputs in (1, 5, 37):
        layer = Int8Linear(torch.nn.Linear(inputs, outputs, bias=False))
        for rows in (1, 3, 4, 5, 9, 1):
            x = torch.randn(rows, 1, inputs, generator=gen).bfloat16().float()  # (B, 1, in)
            want = layer(x.expand(rows, long, inputs))[:, :1]  # (B, 1, out): dequantized
            torch.testing.assert_close(layer(x), want, rtol=2**-8, atol=1e-6)


def test_int8_weights_stay_close_to_the_plain_model() -> None:
    idx = torch.randint(0, 64, (2, 12), generator=torch.Generator().manual_seed(1))
    plain, model = tiny_model(), tiny_model()
    plain.eval()
    assert prepare_for_inference(model, "int8").why == "as asked"
    assert isinstance(model.h[1].mlp.c_proj, Int8Linear)
    with torch.no_grad():
        want = plain(idx).log_softmax(-1)  # (B, T, V)
        torch.testing.assert_close(model(idx).log_softmax(-1), want, atol=5e-2, rtol=0)
        last = model(idx[:, -1:]).log_softmax(-1)  # a decode step, through the kernel
        torch.testing.assert_close(last, plain(idx[:, -1:]).log_softmax(-1), atol=5e-2, rtol=0)


def test_int8_is_not_offered_to_layers_it_cannot_read(tmp_path: Path) -> None:
    timer = FakeTimer(default=1.0, packed=2.0, bf16=2.0, int8=0.1)
    decision = prepare_for_inference(tiny_model(n_embd=24), timer=timer, cache=tmp_path)
    assert decision.choice == "default"
    assert (
        "int8 weights not usable: it fails here (int8 weights need layer inputs in "
        "multiples of 16, not 24)" in decision.why
    )
    with pytest.raises(ConfigError, match="--matmul int8 does not work here .*not 24"):
        prepare_for_inference(tiny_model(n_embd=24), "int8")


def rounding_breaks(model: GPT) -> GPT:
    """Give `model` (untied) an unembedding whose first column is about 1000 in every
    row, apart by a little: in fp32 the common part shifts all logits alike and the
    little differences matter; bf16 rounds them away (its steps near 1000 are 4 wide),
    and int8 too (one step is 1000/127), along with the rows' other weights."""
    gen = torch.Generator().manual_seed(2)
    with torch.no_grad():
        column = model.lm_head.weight[:, 0]
        column.copy_(1000 + 0.5 * torch.randn(column.shape, generator=gen))
    return model


def test_rounding_ways_are_refused_when_their_numbers_stray(tmp_path: Path) -> None:
    model = rounding_breaks(tiny_model(tie_embeddings=False))
    timer = FakeTimer(default=1.0, packed=1.0, bf16=0.1, int8=0.05)
    decision = prepare_for_inference(model, timer=timer, cache=tmp_path)
    assert decision.choice == "default"
    assert "bf16 weights not usable: next-token probabilities move" in decision.why
    assert "int8 weights not usable: next-token probabilities move" in decision.why


def test_bf16_is_checked_on_each_model_even_when_the_times_are_cached(tmp_path: Path) -> None:
    timer = FakeTimer(default=1.0, packed=0.8, bf16=0.4)
    assert prepare_for_inference(tiny_model(), timer=timer, cache=tmp_path).choice == "bf16"
    model = rounding_breaks(tiny_model())  # the same shape, weights bf16 cannot keep
    decision = prepare_for_inference(model, timer=timer, cache=tmp_path)
    assert timer.calls == 1 and decision.cached and decision.choice == "packed"
    assert isinstance(model.lm_head, PackedLinear) and "move by up to" in decision.why
    stored = json.loads(next(tmp_path.glob("speed-*.json")).read_text())["measured"]
    assert stored["rejected"] == {}  # a refusal for these weights is not the shape's


def test_an_explicit_matmul_wins_and_measures_nothing(tmp_path: Path) -> None:
    timer = FakeTimer(default=1.0, packed=9.0, bf16=9.0)
    decision = prepare_for_inference(tiny_model(), "bf16", timer=timer, cache=tmp_path)
    assert decision.choice == "bf16" and timer.calls == 0 and not list(tmp_path.iterdir())
    with pytest.raises(ConfigError, match="--matmul 'fast' is not one of auto, default"):
        prepare_for_inference(tiny_model(), "fast")


def test_the_decode_key_holds_the_batch(tmp_path: Path) -> None:
    timer = FakeTimer(default=1.0, packed=0.5, bf16=2.0)
    prepare_for_inference(tiny_model(), timer=timer, cache=tmp_path, batch=1)
    prepare_for_inference(tiny_model(), timer=timer, cache=tmp_path, batch=3)
    assert timer.calls == 2 and len(list(tmp_path.glob("speed-*.json"))) == 2
    # a batch too large to allocate is timed at 8 sequences: generation refuses it later
    prepare_for_inference(tiny_model(), timer=timer, cache=tmp_path, batch=1 << 20)
    prepare_for_inference(tiny_model(), timer=timer, cache=tmp_path, batch=8)
    assert timer.calls == 3


def test_sample_says_how_its_matmuls_run(
    tmp_path: Path, char_dataset: Dataset, capsys: pytest.CaptureFixture
) -> None:
    run = tmp_path / "run"
    config = tiny_config(vocab_size=char_dataset.tokenizer.vocab_size)
    train(config, TrainConfig(max_iters=2, eval_interval=2, eval_iters=1), char_dataset, run)
    assert main(["sample", "-c", str(run), "-n", "3", "--matmul", "packed", "-p", "a"]) == 0
    assert "(oneDNN packed matmuls (as asked), " in capsys.readouterr().err
    assert main(["sample", "-c", str(run), "-n", "3", "--json", "-p", "a"]) == 0
    record = json.loads(capsys.readouterr().out)
    assert record["matmuls"] in ("default", "packed", "bf16", "int8")
    assert main(["sample", "-c", str(run), "--matmul", "fast"]) != 0
    err = capsys.readouterr().err
    assert "--matmul 'fast' is not one of" in err and len(err.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------
# The precision of a resumed run.


class Recorder(SilentReporter):
    def __init__(self) -> None:
        self.info: RunInfo | None = None

    def start(self, info: RunInfo) -> None:
        self.info = info


def trained_run(tmp_path: Path, dataset: Dataset, precision: str) -> tuple[Path, GPTConfig]:
    run = tmp_path / "run"
    config = tiny_config(vocab_size=dataset.tokenizer.vocab_size)
    cfg = TrainConfig(max_iters=2, eval_interval=2, eval_iters=1, precision=precision)
    train(config, cfg, dataset, run)
    return run, config


def resume(run: Path, config: GPTConfig, dataset: Dataset, precision: str, **meta) -> RunInfo:
    """Resume `run` for two more steps, its config.json first given `meta`; the header."""
    meta_file = run / "latest" / "config.json"
    saved = {**json.loads(meta_file.read_text()), **meta}
    meta_file.write_text(json.dumps(saved))
    cfg = TrainConfig(max_iters=saved["step"] + 2, eval_interval=2, eval_iters=1,
                      precision=precision)  # fmt: skip
    recorder = Recorder()
    snapshot = read_snapshot(run / "latest", train_state=True)
    train(config, cfg, dataset, run, recorder, resume=snapshot)
    assert recorder.info is not None
    return recorder.info


def test_a_snapshot_records_the_precision_and_the_device(
    tmp_path: Path, char_dataset: Dataset
) -> None:
    run, _ = trained_run(tmp_path, char_dataset, "fp32")
    meta = json.loads((run / "latest" / "config.json").read_text())
    assert (meta["autocast"], meta["autocast_device"]) == ("fp32", "cpu")


@pytest.mark.parametrize(
    ("began", "label"),
    [("bf16", "bf16 autocast"), ("bf16-fp32-attention", "bf16 autocast with fp32 attention"),
     ("bf16-matmul-attention", "bf16 autocast with matmul attention")],
)  # fmt: skip
def test_auto_keeps_the_precision_a_resumed_run_began_with(
    tmp_path: Path, char_dataset: Dataset, began: str, label: str
) -> None:
    run, config = trained_run(tmp_path, char_dataset, "auto")
    info = resume(run, config, char_dataset, "auto", autocast=began)  # as if auto chose it
    assert info.precision == f"{label} (as the run began; --precision to change it)"
    assert "autocast" not in info.changes
    assert json.loads((run / "latest" / "config.json").read_text())["autocast"] == began


def test_a_resume_in_another_precision_reports_it(tmp_path: Path, char_dataset: Dataset) -> None:
    run, config = trained_run(tmp_path, char_dataset, "fp32")
    info = resume(run, config, char_dataset, "fp32", autocast="bf16")
    assert info.precision == "fp32 as asked" and info.changes["autocast"] == ["bf16", "fp32"]
    gpu = resume(run, config, char_dataset, "auto", autocast="fp16", autocast_device="cuda")
    assert gpu.precision.startswith(("fp32 (", "bf16 autocast (", "bf16 autocast with "))
    assert gpu.changes["autocast"][0] == "fp16"  # trained on a GPU: decided afresh here


def test_the_precision_a_run_began_with_is_kept_without_measuring() -> None:
    timer = FakeTimer(fp32=1.0, bf16=0.1)
    began = Autocast("fp32", "cpu")
    kept = choose_run_precision(tiny_model(), "auto", 4, DistContext(), began=began, timer=timer)
    assert kept == ("fp32", "fp32 (as the run began; --precision to change it)")
    asked = choose_run_precision(tiny_model(), "bf16", 4, DistContext(), began=began, timer=timer)
    assert asked.dtype == torch.bfloat16 and timer.calls == 0
    attention = choose_run_precision(tiny_model(), "bf16-fp32-attention", 4, DistContext(),
                                     timer=timer)  # fmt: skip
    assert attention == ("bf16-fp32-attention", "bf16 autocast with fp32 attention as asked")
    assert attention.dtype == torch.bfloat16 and attention.attention == "fp32"
    matmul = choose_run_precision(tiny_model(), "bf16-matmul-attention", 4, DistContext(),
                                  timer=timer)  # fmt: skip
    assert matmul.attention == "matmul" and timer.calls == 0
    for name in ("bf16-fp32-attention", "bf16-matmul-attention"):  # only measured on CPUs
        assert keeps(Autocast(name, "cpu"), torch.device("cpu"))
        assert not keeps(Autocast(name, "cuda"), torch.device("cuda"))
    assert trained_in({"autocast": "bf16", "autocast_device": "cpu"}) == Autocast("bf16", "cpu")
    assert trained_in({"autocast": ["x"], "autocast_device": "cpu"}) is None
    assert trained_in({}) is None
