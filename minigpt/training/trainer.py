"""The training loop: steps, evaluation, checkpoints, exact resume, several processes.

`train()` runs one run (new, or resumed from a checkpoint) and reports progress to a
`Reporter` (the CLI draws it); it never prints. Each step draws its micro-batches,
accumulates gradients, clips them and takes an AdamW step, unless the loss or the
gradient norm is not finite: then the step is skipped and counted, and too many in a
row stop the run. `latest/` is saved every `save_every` steps with everything an exact
resume needs; `best/` holds the weights with the lowest val loss. A stop request
(Ctrl-C, SIGTERM, `stop_at`) ends the run after the current step with a checkpoint.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from minigpt.checkpoint import (
    BEST,
    LATEST,
    Snapshot,
    load_weights_into,
    remove_stale_temp_dirs,
    save_checkpoint,
    weights_only_error,
)
from minigpt.config import GPTConfig, SampleConfig, TrainConfig, from_dict, to_dict
from minigpt.data.batches import batch_at, draw_starts
from minigpt.data.dataset import Dataset, check_context_fits
from minigpt.device import (
    autocast,
    choose_compile,
    choose_device,
    choose_precision,
    measure_matmul_peak,
    needs_grad_scaler,
)
from minigpt.errors import CheckpointError, ConfigError, MinigptError, TrainingError
from minigpt.generation.sampling import generate, prompt_ids
from minigpt.model import GPT, count_parameters, flops_per_token
from minigpt.training.distributed import DistContext, all_gather, all_reduce_sum
from minigpt.training.evaluate import estimate_val, evaluate_split
from minigpt.training.metrics import MetricsProcessor
from minigpt.training.optim import lr_at, make_optimizer, run_progress
from minigpt.training.reporting import (
    EvalInfo,
    Reporter,
    RunInfo,
    SilentReporter,
    StopReason,
    TrainResult,
)
from minigpt.training.state import (
    TrainState,
    optimizer_tensors,
    python_random_state,
    restore_optimizer,
    restore_python_random,
    restore_rng,
    rng_tensors,
    state_from_json,
)

MIN_TOKENS_PER_PARAM = 0.25  # below this the model can memorise the data (see README)
SAMPLE_TOKENS = 48  # length of the samples shown while training


# ---------------------------------------------------------------------------------
# One optimizer step.


def forward_backward(
    model: torch.nn.Module,
    micro_batches: list[tuple[torch.Tensor, torch.Tensor]],
    config: TrainConfig,
    device: torch.device,
    dtype: torch.dtype,
    scaler: torch.amp.GradScaler | None,
    ddp: bool,
) -> float:
    """Accumulate the gradient of the mean loss over the micro-batches; that mean.

    Under DDP, gradients are synchronised on the last micro-batch only.
    """
    loss_sum = 0.0
    for i, (x, y) in enumerate(micro_batches):
        last = i == len(micro_batches) - 1
        with nullcontext() if last or not ddp else model.no_sync():
            with autocast(device, dtype):
                logits = model(x.to(device))  # (B, T, V)
                loss = F.cross_entropy(
                    logits.float().flatten(0, 1),
                    y.to(device).flatten(),
                    label_smoothing=config.label_smoothing,
                )
            scaled = loss / len(micro_batches)
            (scaler.scale(scaled) if scaler is not None else scaled).backward()
        loss_sum += loss.item()
    return loss_sum / len(micro_batches)


def apply_gradients(
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    lr: float,
    loss: float,
    config: TrainConfig,
    scaler: torch.amp.GradScaler | None,
) -> tuple[bool, float]:
    """Clip and step unless the loss or gradient norm is not finite; (stepped, norm).

    With fp16's gradient scaler, an overflowing gradient is the scaler's business:
    it skips that step itself and lowers the scale.
    """
    for group in optimizer.param_groups:
        group["lr"] = lr
    if scaler is not None:
        scaler.unscale_(optimizer)
    max_norm = config.grad_clip if config.grad_clip > 0 else float("inf")
    norm = float(torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm))
    ok = math.isfinite(loss) and (scaler is not None or math.isfinite(norm))
    if ok:
        if scaler is not None:
            scaler.step(optimizer)
        else:
            optimizer.step()
    if scaler is not None:
        scaler.update()
    optimizer.zero_grad(set_to_none=True)
    return ok, norm


# ---------------------------------------------------------------------------------
# The run.


def train(
    model_config: GPTConfig,
    train_config: TrainConfig,
    dataset: Dataset,
    run_dir: Path,
    reporter: Reporter | None = None,
    *,
    resume: Snapshot | None = None,
    should_stop: Callable[[], bool] | None = None,
    stop_at: int | None = None,
    ctx: DistContext | None = None,
) -> TrainResult:
    """Train a model on `dataset` into `run_dir`, or continue the run saved in `resume`
    (`read_snapshot(run_dir, train_state=True)`).

    `should_stop` is polled after every step (a signal handler sets it); `stop_at`
    ends the run after that step. Both save `latest/` first.
    """
    if resume is not None:
        _check_same_run(resume, model_config, dataset)
    run = _Run(model_config, train_config, dataset, run_dir, ctx or DistContext())
    reporter = reporter if reporter is not None and run.ctx.is_main else SilentReporter()
    if resume is not None:
        run.restore(resume)
    return run.loop(reporter, should_stop or (lambda: False), stop_at)


class _Run:
    """The live objects of one run and the operations of the loop."""

    def __init__(
        self,
        model_config: GPTConfig,
        config: TrainConfig,
        dataset: Dataset,
        run_dir: Path,
        ctx: DistContext,
    ) -> None:
        tok = dataset.tokenizer
        if model_config.vocab_size < tok.vocab_size:
            raise ConfigError(
                f"vocab_size {model_config.vocab_size} is smaller than the tokenizer's "
                f"{tok.vocab_size}"
            )
        check_context_fits(dataset, model_config.block_size)
        if config.threads is not None:
            torch.set_num_threads(config.threads)
        self.config, self.dataset, self.run_dir, self.ctx = config, dataset, run_dir, ctx
        self.device = _device_for(config.device, ctx)
        self.dtype, self.precision = choose_precision(self.device, config.precision)
        self.compile, self.compile_why = choose_compile(self.device, config.compile)
        torch.manual_seed(config.seed)  # the same initial weights on every rank
        self.model = GPT(model_config).to(self.device)
        torch.manual_seed(config.seed + 1 + ctx.rank)  # dropout masks differ by rank
        self.optimizer = make_optimizer(self.model, config, self.device)
        self.scaler = (
            torch.amp.GradScaler(self.device.type) if needs_grad_scaler(self.dtype) else None
        )
        self.data_gen = torch.Generator().manual_seed(config.seed)
        self.byte_lengths = torch.tensor(tok.token_byte_lengths(), device=self.device)
        self.state = TrainState(world_size=ctx.world_size)
        self.resumed_step: int | None = None
        self.changes: dict[str, list[Any]] = {}
        self.last_val: tuple[float, float] | None = None
        self.evals = 0

    # -- resume -----------------------------------------------------------------

    def restore(self, snapshot: Snapshot) -> None:
        """Load the weights, optimizer, RNGs and counters of a snapshot."""
        if snapshot.train_state is None:
            raise weights_only_error(snapshot.path)
        tensors, where = snapshot.train_state.tensors, str(snapshot.path)
        try:
            saved = from_dict(TrainConfig, snapshot.meta.get("train"), where=where)
        except MinigptError as e:
            raise CheckpointError(str(e)) from e
        state = state_from_json(snapshot.train_state.meta.get("state"), where)
        if run_progress(state.step, state.elapsed, self.config) >= 1.0:
            raise ConfigError(
                f"the run in {snapshot.path.parent} already finished (step {state.step}); "
                "give a larger --max-iters or --time to train it further"
            )
        load_weights_into(self.model, snapshot.weights)
        restore_optimizer(self.model, self.optimizer, tensors)
        if not restore_rng(tensors, self.ctx.rank, self.data_gen, self.device):
            torch.manual_seed(self.config.seed + 1 + self.ctx.rank + state.step)
        restore_python_random(state.python_random)
        if self.scaler is not None and state.scaler is not None:
            self.scaler.load_state_dict(state.scaler)
        old, new = to_dict(saved), to_dict(self.config)
        self.changes = {k: [old[k], new[k]] for k in old if old[k] != new[k]}
        if state.world_size != self.ctx.world_size:
            self.changes["processes"] = [state.world_size, self.ctx.world_size]
            state.world_size = self.ctx.world_size
        self.state = state
        self.resumed_step = state.step
        val = snapshot.meta.get("val_loss"), snapshot.meta.get("val_bpb")
        self.last_val = val if None not in val else None

    # -- the loop ---------------------------------------------------------------

    def loop(
        self, reporter: Reporter, should_stop: Callable[[], bool], stop_at: int | None
    ) -> TrainResult:
        cfg, st, ctx = self.config, self.state, self.ctx
        train_model = self._wrapped_model()
        tokens_per_step = cfg.batch_size * cfg.grad_accum * self.model.config.block_size
        tokens_per_step *= ctx.world_size
        info = self._run_info(tokens_per_step)
        if self.resumed_step is not None and ctx.is_main:
            remove_stale_temp_dirs(self.run_dir)
        log = MetricsProcessor(cfg, reporter, writes=ctx.is_main)
        log.start(info)
        self.model.train()
        start = time.perf_counter() - st.elapsed
        progress = run_progress(st.step, st.elapsed, cfg)
        bad_in_a_row, stopped = 0, None
        try:
            while progress < 1.0 and stopped is None:
                lr = lr_at(st.step, progress, cfg)
                loss = forward_backward(
                    train_model, self._micro_batches(), cfg, self.device, self.dtype,
                    self.scaler, ctx.enabled,
                )  # fmt: skip
                # One collective per step: the mean loss, any rank's stop request and
                # the mean clock, so that every rank takes the same decisions.
                loss_sum, stop_votes, clock = all_reduce_sum(
                    [loss, float(should_stop()), time.perf_counter() - start], ctx
                )
                loss = loss_sum / ctx.world_size
                ok, norm = apply_gradients(train_model, self.optimizer, lr, loss, cfg, self.scaler)
                st.step += 1
                st.tokens += tokens_per_step
                st.elapsed = clock / ctx.world_size
                progress = run_progress(st.step, st.elapsed, cfg)
                bad_in_a_row = 0 if ok else bad_in_a_row + 1
                st.skipped_steps += 0 if ok else 1
                if bad_in_a_row >= cfg.max_bad_steps:
                    raise _diverged(bad_in_a_row, st.step, lr, self.run_dir)
                if log.should_log(st.step, progress, ok):
                    log.log_step(st, loss if ok else None, lr, norm, progress)
                if st.step % cfg.eval_interval == 0 and progress < 1.0:
                    if self._evaluate(log):
                        stopped = StopReason.EARLY_STOP
                if stop_votes > 0:
                    stopped = StopReason.INTERRUPTED
                elif stop_at is not None and st.step >= stop_at:
                    stopped = StopReason.STOP_AT
                due = st.step % (cfg.save_every or cfg.eval_interval) == 0 and progress < 1.0
                if stopped is not None or due:
                    self.save_latest()
            if stopped in (None, StopReason.EARLY_STOP):
                self._evaluate(log, final=True)
                self.save_latest()
            if stopped is not None:
                log.log_stop(st.step, stopped)
        finally:
            log.close()
        val = self.last_val or (None, None)
        result = TrainResult(
            run_dir=self.run_dir,
            steps=st.step,
            elapsed=st.elapsed,
            val_loss=val[0],
            val_bpb=val[1],
            tokens_per_s=st.tokens / max(st.elapsed, 1e-9),
            stopped=stopped,
            skipped_steps=st.skipped_steps,
        )
        reporter.end(result)
        return result

    def _micro_batches(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """This rank's share of the step's micro-batches; the draw covers every rank."""
        cfg, ctx = self.config, self.ctx
        data, block = self.dataset.splits["train"], self.model.config.block_size
        starts = draw_starts(
            data, ctx.world_size * cfg.grad_accum, cfg.batch_size, block, self.data_gen
        )  # (world_size * grad_accum, batch_size)
        mine = starts[ctx.rank * cfg.grad_accum : (ctx.rank + 1) * cfg.grad_accum]
        return [batch_at(data, row, block) for row in mine]

    def _wrapped_model(self) -> torch.nn.Module:
        model: torch.nn.Module = self.model
        if self.compile:
            model = torch.compile(model)
        if self.ctx.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
        return model

    # -- evaluation ---------------------------------------------------------------

    def _evaluate(self, log: MetricsProcessor, final: bool = False) -> bool:
        """Evaluate, keep best/ up to date; True when patience has run out."""
        cfg, st = self.config, self.state
        val_data = self.dataset.splits["val"]
        if final:
            val_loss, val_bpb = evaluate_split(
                self.model, val_data, cfg.batch_size, self.byte_lengths, self.device,
                self.dtype, ctx=self.ctx,
            )  # fmt: skip
        else:
            val_loss, val_bpb = estimate_val(
                self.model, val_data, cfg.batch_size, cfg.eval_iters, self.byte_lengths,
                self.device, self.dtype, cfg.seed + 1, self.ctx,
            )  # fmt: skip
        if not math.isfinite(val_loss):
            raise _diverged(1, st.step, None, self.run_dir, what="validation loss")
        self.last_val = (val_loss, val_bpb)
        best = st.best_val_loss is None or val_loss < st.best_val_loss
        if best:
            st.best_val_loss, st.best_step, st.evals_since_best = val_loss, st.step, 0
            if self.ctx.is_main:
                save_checkpoint(
                    self.run_dir / BEST, self.model, self.dataset.tokenizer, self._extra()
                )
        elif not final:
            st.evals_since_best += 1
        self.evals += 1
        sample = None
        if not final and cfg.sample_every and self.evals % cfg.sample_every == 0:
            sample = self._sample() if self.ctx.is_main else None
        info = EvalInfo(st.step, val_loss, val_bpb, final=final, best=best, sample=sample)
        log.log_eval(info)
        return cfg.patience is not None and st.evals_since_best >= cfg.patience

    def _sample(self) -> str:
        """A short continuation of an empty prompt, with its own fixed seed."""
        tok = self.dataset.tokenizer
        ids = torch.tensor([prompt_ids(tok, "")], device=self.device)
        gen = torch.Generator(device=self.device).manual_seed(self.config.seed)
        settings = SampleConfig(max_new_tokens=SAMPLE_TOKENS, temperature=0.8)
        was_training = self.model.training
        self.model.eval()
        steps = generate(self.model, ids, settings, gen, tok.vocab_size)
        out = [int(step.token) for step in steps]
        self.model.train(was_training)
        return tok.decode(out)

    # -- saving -----------------------------------------------------------------

    def _extra(self) -> dict[str, Any]:
        val_loss, val_bpb = self.last_val or (None, None)
        return {
            "step": self.state.step,
            "val_loss": val_loss,
            "val_bpb": val_bpb,
            "train": to_dict(self.config),
            "dataset": self.dataset.meta,
        }

    def save_latest(self) -> None:
        """Write latest/ with the training state. Every rank calls it (each rank's RNG
        state is gathered); rank 0 writes."""
        cpu_states = all_gather(torch.get_rng_state(), self.ctx)
        cuda_states = None
        if self.device.type == "cuda":
            cuda_states = all_gather(torch.cuda.get_rng_state(self.device), self.ctx)
        if not self.ctx.is_main:
            return
        st = self.state
        st.scaler = self.scaler.state_dict() if self.scaler is not None else None
        st.python_random = python_random_state()
        tensors = optimizer_tensors(self.model, self.optimizer)
        tensors.update(rng_tensors(cpu_states, cuda_states, self.data_gen))
        save_checkpoint(
            self.run_dir / LATEST,
            self.model,
            self.dataset.tokenizer,
            self._extra(),
            train_state=(tensors, {"state": st.to_json()}),
        )

    # -- reporting --------------------------------------------------------------

    def _run_info(self, tokens_per_step: int) -> RunInfo:
        counts = count_parameters(self.model)
        n_params = sum(counts.values())
        train_tokens = self.dataset.num_tokens("train")
        return RunInfo(
            run_dir=self.run_dir,
            device=str(self.device),
            precision=self.precision,
            compiled=self.compile_why,
            num_params=n_params,
            param_counts=counts,
            tokens_per_step=tokens_per_step,
            train_tokens=train_tokens,
            val_tokens=self.dataset.num_tokens("val"),
            world_size=self.ctx.world_size,
            flops_per_token=flops_per_token(self.model.config),
            peak_flops=measure_matmul_peak(self.device, self.dtype),
            resumed_step=self.resumed_step,
            changes=self.changes,
            warnings=[w for w in [dataset_size_warning(train_tokens, n_params)] if w],
        )


# ---------------------------------------------------------------------------------
# Checks and messages.


def _device_for(requested: str, ctx: DistContext) -> torch.device:
    """The device of this rank: its own GPU under torchrun, else the asked-for one."""
    device = choose_device(requested)
    if ctx.enabled and device.type == "cuda":
        return torch.device("cuda", ctx.local_rank)
    return device


def _check_same_run(snapshot: Snapshot, model_config: GPTConfig, dataset: Dataset) -> None:
    """A resumed run keeps its model shape and its tokenizer; say what differs."""
    spec = snapshot.meta.get("tokenizer")
    if spec != dataset.tokenizer.spec():
        kind = spec.get("kind", "?") if isinstance(spec, dict) else "?"
        size = spec.get("vocab_size", "?") if isinstance(spec, dict) else "?"
        raise ConfigError(
            f"the checkpoint was trained with another tokenizer ({kind}, {size} tokens) than "
            "this dataset's; resume with the same text file and tokenizer options"
        )
    old, new = to_dict(snapshot.config), to_dict(model_config)
    diff = [f"{k} {old[k]!r} -> {new[k]!r}" for k in new if old[k] != new[k]]
    if diff:
        raise ConfigError(
            f"cannot resume with a different model ({', '.join(diff)}); drop the shape "
            "options to continue the saved model, or start a new run"
        )


def _diverged(
    count: int, step: int, lr: float | None, run_dir: Path, what: str = "loss or gradient"
) -> TrainingError:
    at_lr = f" (it was {lr:.2g})" if lr is not None else ""
    return TrainingError(
        f"the {what} was not finite for {count} step(s) in a row, up to step {step}: "
        f"training diverged; lower --lr{at_lr}, raise --warmup, or use --precision fp32 "
        f"or bf16 rather than fp16. The last good checkpoint in {run_dir} is unchanged"
    )


def dataset_size_warning(train_tokens: int, num_params: int) -> str | None:
    """A warning when the data is small for the model, with a size that suits it."""
    if train_tokens >= MIN_TOKENS_PER_PARAM * num_params:
        return None
    suggested = int(train_tokens / MIN_TOKENS_PER_PARAM)
    return (
        f"the training split has {train_tokens:,} tokens for {num_params:,} parameters "
        f"({train_tokens / num_params:.2f} tokens per parameter); the model may memorise "
        f"it. A model of about {suggested:,} parameters or fewer suits it (e.g. --preset "
        "tiny or a smaller --n-embd), or give more text"
    )
