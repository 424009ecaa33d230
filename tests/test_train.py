"""The training loop: schedule, device and precision choice, a short run end to end."""

import json
import math
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from minigpt.checkpoint import load_checkpoint
from minigpt.config import DataConfig, TrainConfig
from minigpt.data.dataset import Dataset
from minigpt.device import choose_device, choose_precision
from minigpt.errors import ConfigError, TrainingError
from minigpt.training.evaluate import evaluate_split
from minigpt.training.optim import lr_at, make_optimizer, run_progress
from minigpt.training.trainer import train
from tests.conftest import tiny_config


def test_lr_schedule_warms_up_to_the_peak_then_decays() -> None:
    """Warm-up rises linearly to exactly --lr at step warmup_iters (nanoGPT's get_lr);
    the cosine then spans the rest of the run, down to lr * min_lr_ratio."""
    config = TrainConfig(lr=1e-3, warmup_iters=10, min_lr_ratio=0.1, max_iters=110)
    assert lr_at(0, 0.0, config) == pytest.approx(1e-3 / 11)
    assert lr_at(9, 9 / 110, config) == pytest.approx(1e-3 * 10 / 11)
    assert lr_at(10, 10 / 110, config) == pytest.approx(1e-3)  # the peak is --lr
    assert lr_at(60, 60 / 110, config) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))  # midway
    assert lr_at(110, 1.0, config) == pytest.approx(1e-4)
    lrs = [lr_at(s, s / 110, config) for s in range(111)]
    assert max(lrs) == pytest.approx(1e-3)
    assert all(a <= b for a, b in zip(lrs[:11], lrs[1:11], strict=False))  # rising
    assert all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))  # then falling
    # a time budget: the decay spans the run from wherever warm-up ended
    assert lr_at(10, 0.25, config, warmup_end=0.25) == pytest.approx(1e-3)
    assert lr_at(50, 0.625, config, warmup_end=0.25) == pytest.approx(1e-3 * 0.55)


def test_a_trained_run_reaches_its_learning_rate(char_dataset, tmp_path: Path) -> None:
    """The issue's case: with 300 steps and warm-up 100 the rate peaked near 0.77 * lr."""
    config = TrainConfig(max_iters=30, warmup_iters=10, lr=3e-3, batch_size=2,
                         eval_interval=30, log_interval=1, device="cpu")  # fmt: skip
    train(tiny_config(vocab_size=char_dataset.tokenizer.vocab_size), config, char_dataset,
          tmp_path / "run")  # fmt: skip
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").open()]
    lrs = [row["lr"] for row in rows if "loss" in row]
    assert max(lrs) == pytest.approx(3e-3)


def test_progress_follows_steps_or_time() -> None:
    assert run_progress(50, 1.0, TrainConfig(max_iters=100)) == 0.5
    timed = TrainConfig(max_iters=None, time_budget=10.0)
    assert run_progress(50, 5.0, timed) == 0.5
    both = TrainConfig(max_iters=100, time_budget=10.0)
    assert run_progress(10, 9.0, both) == 0.9


def test_weight_decay_only_on_matrices() -> None:
    from minigpt.model import GPT

    model = GPT(tiny_config())
    opt = make_optimizer(model, TrainConfig(weight_decay=0.1), torch.device("cpu"))
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.1 and all(p.dim() == 2 for p in decayed["params"])
    assert plain["weight_decay"] == 0.0 and all(p.dim() == 1 for p in plain["params"])


def test_device_and_precision_choice() -> None:
    cpu = torch.device("cpu")
    assert choose_device("cpu") == cpu
    dtype, why = choose_precision(cpu, "auto")  # without a model to measure: fp32
    assert dtype == torch.float32 and "fp32" in why
    assert choose_precision(cpu, "bf16") == (torch.bfloat16, "bf16 autocast as asked")
    if not torch.cuda.is_available():
        assert choose_device("auto") == cpu or torch.backends.mps.is_available()
        with pytest.raises(ConfigError, match="no CUDA GPU"):
            choose_device("cuda")
    with pytest.raises(ConfigError, match="unknown --device"):
        choose_device("tpu9")


def test_bits_per_byte_of_an_ascii_char_model_is_loss_over_ln2(char_dataset: Dataset) -> None:
    from minigpt.model import GPT

    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=char_dataset.tokenizer.vocab_size))
    byte_lengths = torch.tensor(char_dataset.tokenizer.token_byte_lengths())
    loss, bpb = evaluate_split(
        model, char_dataset.splits["val"], 8, byte_lengths, torch.device("cpu"), torch.float32
    )
    assert bpb == pytest.approx(loss / math.log(2))


def test_a_short_run_learns_and_checkpoints(char_dataset: Dataset, tmp_path: Path) -> None:
    vocab = char_dataset.tokenizer.vocab_size
    config = TrainConfig(
        max_iters=60, batch_size=8, eval_interval=30, eval_iters=2, log_interval=10,
        lr=3e-3, warmup_iters=5,
    )  # fmt: skip
    result = train(tiny_config(vocab_size=vocab), config, char_dataset, tmp_path / "run")
    assert result.steps == 60
    assert result.val_loss < math.log(vocab) - 0.5  # it learned something
    lines = (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["step"] for r in rows if "loss" in r] == [10, 20, 30, 40, 50, 60]
    assert [r["step"] for r in rows if "val_bpb" in r] == [30, 60]
    assert rows[0]["event"] == "start" and rows[-1]["final"] is True
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.meta["step"] == 60
    assert ckpt.meta["val_bpb"] == pytest.approx(result.val_bpb)


def test_every_row_of_metrics_jsonl_carries_its_wall_clock_time(
    char_dataset: Dataset, tmp_path: Path
) -> None:
    vocab = char_dataset.tokenizer.vocab_size
    config = TrainConfig(max_iters=6, batch_size=2, eval_interval=2, eval_iters=1, log_interval=1,
                         sample_every=0)  # fmt: skip
    before = time.time()
    train(tiny_config(vocab_size=vocab), config, char_dataset, tmp_path / "run", stop_at=3)
    after = time.time()
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    kinds = {"event" if "event" in r else "eval" if "val_loss" in r else "step" for r in rows}
    assert kinds == {"event", "eval", "step"}  # start, steps 1-3, the eval at 2, stop
    times = [r["time"] for r in rows]
    assert all(before - 0.001 <= t <= after + 0.001 for t in times)  # Unix seconds, to the ms
    assert times == sorted(times)


def test_a_periodic_eval_that_would_read_more_than_the_val_split_reads_the_split(
    char_dataset: Dataset, tmp_path: Path
) -> None:
    """Random batches are the estimate only while they are fewer tokens than the split;
    past that, the periodic eval is the whole split's exact figure."""
    vocab, val = char_dataset.tokenizer.vocab_size, char_dataset.splits["val"]
    byte_lengths = torch.tensor(char_dataset.tokenizer.token_byte_lengths())
    block = tiny_config().block_size
    for eval_iters, whole in ((1, False), (len(val) // (2 * block) + 1, True)):
        config = TrainConfig(max_iters=4, batch_size=2, eval_interval=2, eval_iters=eval_iters,
                             sample_every=0, precision="fp32")  # fmt: skip
        run = tmp_path / str(eval_iters)
        train(tiny_config(vocab_size=vocab), config, char_dataset, run, stop_at=2)
        rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
        (val_loss,) = [r["val_loss"] for r in rows if "val_loss" in r]
        model = load_checkpoint(run).model  # the weights of step 2, which were evaluated
        loss, _ = evaluate_split(model, val, 2, byte_lengths, torch.device("cpu"), torch.float32)
        assert (val_loss == pytest.approx(loss, rel=1e-5)) is whole


def test_vocab_smaller_than_tokenizer_is_refused(char_dataset: Dataset, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="smaller than the tokenizer"):
        train(tiny_config(vocab_size=3), TrainConfig(max_iters=1), char_dataset, tmp_path)


def test_bits_per_byte_counts_utf8_bytes_of_the_targets(tmp_path: Path) -> None:
    """With multi-byte text and BPE tokens, bpb divides by the targets' UTF-8 bytes."""
    from minigpt.data.dataset import build_dataset, load_dataset
    from minigpt.model import GPT

    text = ("안녕하세요, 세계! café 🙂 " * 200 + "the quick brown fox. " * 200) * 2
    build_dataset(text.encode(), DataConfig(tokenizer="bpe", vocab_size=300), tmp_path / "d")
    dataset = load_dataset(tmp_path / "d")
    tok = dataset.tokenizer
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=tok.vocab_size))
    val = dataset.splits["val"]
    loss, bpb = evaluate_split(
        model, val, 8, torch.tensor(tok.token_byte_lengths()), torch.device("cpu"), torch.float32
    )
    target_bytes = dataset.meta["val_bytes"] - len(tok.token_bytes(int(val[0])))
    n_targets = len(val) - 1
    assert target_bytes > 1.5 * n_targets  # multi-byte tokens: bytes and tokens differ
    assert bpb == pytest.approx(loss * n_targets / (math.log(2) * target_bytes))


def _nan_after(monkeypatch: pytest.MonkeyPatch, bad_calls: Callable[[int], bool]) -> None:
    """Make forward_backward report a NaN loss on the calls `bad_calls` picks."""
    import minigpt.training.step as step_module

    real = step_module.forward_backward
    calls = []

    def patched(*args, **kwargs):
        calls.append(1)
        loss = real(*args, **kwargs)
        return float("nan") if bad_calls(len(calls)) else loss

    monkeypatch.setattr(step_module, "forward_backward", patched)


def test_a_non_finite_step_is_skipped_and_counted(
    char_dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _nan_after(monkeypatch, lambda call: call in (5, 6, 9))
    vocab = char_dataset.tokenizer.vocab_size
    config = TrainConfig(max_iters=20, batch_size=4, eval_interval=10, eval_iters=1)
    result = train(tiny_config(vocab_size=vocab), config, char_dataset, tmp_path / "run")
    assert result.steps == 20 and result.skipped_steps == 3
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    skipped = [r["step"] for r in rows if r.get("skipped")]
    assert skipped == [5, 6, 9] and all(r["loss"] is None for r in rows if r.get("skipped"))
    assert "NaN" not in (tmp_path / "run" / "metrics.jsonl").read_text()


def test_a_skipped_step_leaves_weights_and_moments_alone() -> None:
    from minigpt.model import GPT
    from minigpt.training.step import apply_gradients

    torch.manual_seed(0)
    model = GPT(tiny_config())
    opt = make_optimizer(model, TrainConfig(), torch.device("cpu"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    for bad_loss, bad_grad in ((True, False), (False, True)):
        model(torch.zeros(1, 4, dtype=torch.long)).sum().backward()
        if bad_grad:
            model.wte.weight.grad[0, 0] = float("inf")
        loss = float("nan") if bad_loss else 1.0
        stepped, _ = apply_gradients(model, opt, 1e-3, loss, TrainConfig(), None)
        assert not stepped
        assert all(p.grad is None for p in model.parameters())
        assert not opt.state  # no moments were touched
        assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_a_diverged_run_stops_and_keeps_the_last_checkpoint(
    char_dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _nan_after(monkeypatch, lambda call: call > 12)
    vocab = char_dataset.tokenizer.vocab_size
    config = TrainConfig(max_iters=50, batch_size=4, eval_interval=10, eval_iters=1)
    with pytest.raises(TrainingError, match="5 step.*in a row.*diverged.*lower --lr"):
        train(tiny_config(vocab_size=vocab), config, char_dataset, tmp_path / "run")
    ckpt = load_checkpoint(tmp_path / "run")
    assert ckpt.meta["step"] == 10
    metrics = (tmp_path / "run" / "metrics.jsonl").read_text()
    assert "NaN" not in metrics


def test_non_finite_weights_are_never_saved(char_dataset: Dataset, tmp_path: Path) -> None:
    from minigpt.checkpoint import save_checkpoint
    from minigpt.errors import CheckpointError
    from minigpt.model import GPT

    tok = char_dataset.tokenizer
    model = GPT(tiny_config(vocab_size=tok.vocab_size))
    save_checkpoint(tmp_path / "latest", model, tok, {"step": 1})
    before = (tmp_path / "latest" / "model.safetensors").read_bytes()
    with torch.no_grad():
        model.h[0].mlp.c_proj.weight[0, 0] = float("nan")
    with pytest.raises(CheckpointError, match="h.0.mlp.c_proj.weight holds NaN"):
        save_checkpoint(tmp_path / "latest", model, tok, {"step": 2})
    assert (tmp_path / "latest" / "model.safetensors").read_bytes() == before


def _losses(run_dir: Path) -> list[tuple]:
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r.get("loss"), r.get("val_loss")) for r in rows if "event" not in r]


def test_fp16_gradient_scaler_state_is_checkpointed_and_resumed(
    char_dataset: Dataset, tmp_path: Path
) -> None:
    """fp16 autocast runs on CPU too, so the scaler's resume is tested here."""
    from minigpt.checkpoint import read_snapshot

    vocab = char_dataset.tokenizer.vocab_size
    config = TrainConfig(
        max_iters=16, batch_size=4, eval_interval=8, eval_iters=1, log_interval=1,
        precision="fp16", sample_every=0,
    )  # fmt: skip
    model_config = tiny_config(vocab_size=vocab, dropout=0.1)
    train(model_config, config, char_dataset, tmp_path / "full")
    paused = train(model_config, config, char_dataset, tmp_path / "part", stop_at=5)
    assert paused.stopped == "stop_at" and paused.steps == 5
    snapshot = read_snapshot(tmp_path / "part" / "latest", train_state=True)
    state = snapshot.train_state.meta
    assert state["state"]["scaler"]["_growth_tracker"] == 5  # five clean fp16 steps
    train(model_config, config, char_dataset, tmp_path / "part", resume=snapshot)
    assert _losses(tmp_path / "part") == _losses(tmp_path / "full")


def test_warmup_stable_decay_schedule() -> None:
    config = TrainConfig(lr=1e-3, warmup_iters=0, min_lr_ratio=0.1, schedule="wsd",
                         decay_fraction=0.2, max_iters=100)  # fmt: skip
    assert lr_at(10, 0.1, config) == pytest.approx(1e-3)
    assert lr_at(79, 0.79, config) == pytest.approx(1e-3)
    assert lr_at(90, 0.9, config) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))
    assert lr_at(100, 1.0, config) == pytest.approx(1e-4)
    warm = TrainConfig(lr=1e-3, warmup_iters=20, schedule="wsd", decay_fraction=0.5,
                       max_iters=100)  # fmt: skip
    assert lr_at(20, 0.2, warm) == lr_at(60, 0.6, warm) == pytest.approx(1e-3)
    assert lr_at(80, 0.8, warm) == pytest.approx(1e-3 * (0.1 + 0.9 * 0.5))


def test_label_smoothing_reaches_the_training_loss() -> None:
    from minigpt.model import GPT
    from minigpt.training.step import forward_backward

    torch.manual_seed(0)
    model = GPT(tiny_config())
    x = torch.randint(0, 64, (2, 8))
    y = torch.randint(0, 64, (2, 8))
    cpu = torch.device("cpu")
    smoothed = forward_backward(
        model, [(x, y)], TrainConfig(label_smoothing=0.3), cpu, torch.float32, None, False
    )
    logp = torch.log_softmax(model(x).detach(), dim=-1).flatten(0, 1)
    nll = -logp.gather(1, y.flatten()[:, None]).mean()
    assert smoothed == pytest.approx(float(0.7 * nll - 0.3 * logp.mean()), rel=1e-5)


def test_patience_stops_early_and_best_keeps_the_best_weights(
    char_dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import minigpt.training.evaluate as evaluate_module

    worse = iter([3.0, 3.5, 4.0, 4.5, 5.0])
    monkeypatch.setattr(evaluate_module, "estimate_val", lambda *a, **k: (next(worse), 1.0))
    vocab = char_dataset.tokenizer.vocab_size
    config = TrainConfig(max_iters=100, batch_size=4, eval_interval=5, eval_iters=1,
                         patience=2, sample_every=0)  # fmt: skip
    result = train(tiny_config(vocab_size=vocab), config, char_dataset, tmp_path / "run")
    assert result.stopped == "early_stop" and result.steps == 15  # evals at 5, 10, 15
    assert load_checkpoint(tmp_path / "run" / "best").meta["step"] == 5
    assert load_checkpoint(tmp_path / "run").meta["step"] == 15


def test_small_data_warning_suggests_a_size() -> None:
    from minigpt.training.sizing import dataset_size_warning

    config = tiny_config(n_embd=128, n_head=4)
    assert dataset_size_warning(1_000_000, config, 800_000, max_block=1000) is None
    message = dataset_size_warning(10_000, config, 1_000_000, max_block=1000)
    assert message is not None and "0.01 tokens per parameter" in message
    assert "about 40,000 parameters" in message and "--preset tiny" in message
