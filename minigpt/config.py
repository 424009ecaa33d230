"""Typed settings: the model shape (`GPTConfig`), a training run (`TrainConfig`),
a dataset (`DataConfig`) and sampling (`SampleConfig`).

Every field is JSON-native (numbers, strings, booleans, None), so
`asdict -> json -> from_dict` round-trips. Each dataclass validates itself when it
is built and raises `ConfigError` with a message that names the field and the fix;
values read from a stranger's `config.json` go through the same checks. A field that
the command line sets is declared with `setting(default, help, flags)`: its default,
help text and flags live here and nowhere else (`minigpt.schema`, `minigpt.cli.settings`).
"""

from __future__ import annotations

import typing
from dataclasses import dataclass
from typing import Literal

from minigpt.errors import ConfigError
from minigpt.schema import check_field_types, require, require_finite, require_in, setting

PosEncoding = Literal["learned", "sinusoidal", "rope"]
NormKind = Literal["layernorm", "rmsnorm"]
MLPKind = Literal["gelu", "swiglu"]
Schedule = Literal["cosine", "wsd"]
Precision = Literal["auto", "fp32", "bf16", "bf16-fp32-attention", "bf16-matmul-attention", "fp16"]
Compile = Literal["auto", "on", "off"]
OptimizerName = Literal["adamw", "muon"]
POS_ENCODINGS: tuple[str, ...] = typing.get_args(PosEncoding)
NORM_KINDS: tuple[str, ...] = typing.get_args(NormKind)
MLP_KINDS: tuple[str, ...] = typing.get_args(MLPKind)
SCHEDULES: tuple[str, ...] = typing.get_args(Schedule)
PRECISIONS: tuple[str, ...] = typing.get_args(Precision)
OPTIMIZERS: tuple[str, ...] = typing.get_args(OptimizerName)

# Upper bounds that keep a hostile or mistyped config from asking for absurd memory
# before anything is allocated. They are far above anything minigpt trains.
MAX_VOCAB = 1 << 21
MAX_WIDTH = 1 << 16
MAX_LAYERS = 1024
MAX_BLOCK = 1 << 20
MAX_PARAMS = 50_000_000_000
MAX_SEED = (1 << 63) - 1  # torch.Generator.manual_seed takes a signed 64-bit integer
MAX_BATCH = 1 << 16  # sequences per micro-batch, micro-batches per step, samples at once
MAX_STEPS = 10**12  # any count of steps or evaluations
MAX_THREADS = 4096
MAX_NEW_TOKENS = 10**9
MIN_BPE_VOCAB, MAX_BPE_VOCAB = 258, 1_000_000  # the BPE trainer's own limits
MAX_PENALTY = 100.0  # larger penalties only overflow float32 logits

# DataConfig.tokenizer of a run that starts from a model (`train --init-from`): the
# text is tokenized with that model's own tokenizer.
INIT_FROM_TOKENIZER = "init-from"
DEFAULT_BPE_VOCAB = 512  # measured best of 512/1024/2048 for the default model (benchmarks/)


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a decoder-only GPT (names follow GPT-2 / nanoGPT)."""

    # None while the shape is chosen before the tokenizer exists; a model needs it set
    # (`dataclasses.replace(config, vocab_size=tokenizer.vocab_size)`).
    vocab_size: int | None = 65
    block_size: int = setting(256, "Context length in tokens.", "--block-size")
    n_layer: int = setting(4, "Transformer blocks.", "--n-layer")
    n_head: int = setting(4, "Attention heads per block.", "--n-head")
    # Grouped-query attention: n_kv_head key/value heads, each shared by n_head / n_kv_head
    # query heads (1 = multi-query attention). None = n_head, plain multi-head attention.
    n_kv_head: int | None = setting(
        None,
        "Key/value heads, each shared by a group of query heads (grouped-query "
        "attention); must divide --n-head.",
        "--n-kv-head",
        unset="same as --n-head",
    )
    n_embd: int = setting(128, "Width of the residual stream.", "--n-embd")
    n_inner: int | None = None  # MLP hidden width; None = 4*n_embd (gelu), ~8/3*n_embd (swiglu)
    pos_encoding: PosEncoding = setting(
        "learned", f"Positions: {', '.join(POS_ENCODINGS)}.", "--pos"
    )
    norm: NormKind = setting("layernorm", f"Norm: {', '.join(NORM_KINDS)}.", "--norm")
    mlp: MLPKind = setting("gelu", f"Feed-forward: {', '.join(MLP_KINDS)}.", "--mlp")
    bias: bool = setting(True, "Biases in linear layers and norms.", "--bias/--no-bias")
    dropout: float = setting(0.0, "Dropout probability.", "--dropout")
    tie_embeddings: bool = setting(
        True, "Share the embedding and unembedding matrix.", "--tie/--no-tie"
    )
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.vocab_size is not None:
            require(1 <= self.vocab_size <= MAX_VOCAB, f"vocab_size must be in 1..{MAX_VOCAB}")
        require(1 <= self.block_size <= MAX_BLOCK, f"block_size must be in 1..{MAX_BLOCK}")
        require(1 <= self.n_layer <= MAX_LAYERS, f"n_layer must be in 1..{MAX_LAYERS}")
        require(1 <= self.n_embd <= MAX_WIDTH, f"n_embd must be in 1..{MAX_WIDTH}")
        require(1 <= self.n_head <= self.n_embd, "n_head must be in 1..n_embd")
        require(
            self.n_embd % self.n_head == 0,
            f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
            f"try n_head in {_divisors(self.n_embd)}",
        )
        if self.n_kv_head is not None:
            require(
                1 <= self.n_kv_head <= self.n_head and self.n_head % self.n_kv_head == 0,
                f"n_kv_head ({self.n_kv_head}) must divide n_head ({self.n_head}); "
                f"try n_kv_head in {_divisors(self.n_head)}",
            )
        if self.n_inner is not None:
            require(1 <= self.n_inner <= 8 * MAX_WIDTH, "n_inner must be positive")
        if self.pos_encoding == "rope":
            require(self.head_size % 2 == 0, "rope needs an even head size (n_embd / n_head)")
        if self.pos_encoding == "sinusoidal":
            require(self.n_embd % 2 == 0, "sinusoidal positions need an even n_embd")
        require_finite("dropout", self.dropout)
        require(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        require_finite("norm_eps", self.norm_eps)
        require(0.0 < self.norm_eps < 1.0, "norm_eps must be in (0, 1)")
        require_finite("rope_theta", self.rope_theta)
        require(self.rope_theta > 1.0, "rope_theta must be > 1")
        require(
            self.approx_num_params() <= MAX_PARAMS,
            f"this shape has about {self.approx_num_params():.3g} parameters, "
            f"more than minigpt supports ({MAX_PARAMS:.0e})",
        )

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def kv_heads(self) -> int:
        """Key/value heads per block: n_kv_head, or n_head when it is None."""
        return self.n_head if self.n_kv_head is None else self.n_kv_head

    @property
    def kv_size(self) -> int:
        """Width of the keys (and of the values) of one token: kv_heads * head_size."""
        return self.kv_heads * self.head_size

    @property
    def hidden_size(self) -> int:
        """Width of the feed-forward layer between up- and down-projection."""
        if self.n_inner is not None:
            return self.n_inner
        if self.mlp == "swiglu":
            # 8/3 * d keeps SwiGLU's three matrices at the parameter count of GELU's two.
            return _round_up(int(8 * self.n_embd / 3), 8)
        return 4 * self.n_embd

    def approx_num_params(self) -> int:
        """Parameter count from the shape alone (no allocation), to vet configs early."""
        d, h = self.n_embd, self.hidden_size
        mlp_mats = 3 if self.mlp == "swiglu" else 2
        attn = 2 * d * d + 2 * d * self.kv_size  # W^Q and W^O, then W^K and W^V
        per_layer = attn + mlp_mats * d * h
        embed = (self.vocab_size or 0) * d * (1 if self.tie_embeddings else 2)
        pos = self.block_size * d if self.pos_encoding == "learned" else 0
        return self.n_layer * per_layer + embed + pos


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, min(n, 64) + 1) if n % k == 0]


def _round_up(x: int, multiple: int) -> int:
    return ((x + multiple - 1) // multiple) * multiple


@dataclass(frozen=True)
class DataConfig:
    """How a text file becomes a dataset: tokenizer, validation split, text encoding."""

    tokenizer: str = setting(
        "bpe", "bpe (trained on your text), char, or a tiktoken name such as gpt2.",
        "--tokenizer", "-t",
    )  # fmt: skip
    vocab_size: int | None = setting(
        None, "Vocabulary of a bpe tokenizer.", "--vocab-size", unset=str(DEFAULT_BPE_VOCAB)
    )
    val_fraction: float = setting(0.1, "Share of the text kept for validation.", "--val-fraction")
    encoding: str = setting(
        "utf-8", "How the file's bytes are decoded, e.g. latin-1.", "--encoding"
    )

    def __post_init__(self) -> None:
        check_field_types(self)
        require_finite("val_fraction", self.val_fraction)
        require(
            0.0 < self.val_fraction < 1.0,
            f"val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction}",
        )
        if self.tokenizer == "bpe" and self.vocab_size is not None:
            require(
                MIN_BPE_VOCAB <= self.vocab_size <= MAX_BPE_VOCAB,
                f"the bpe tokenizer needs --vocab-size from {MIN_BPE_VOCAB} (256 bytes, "
                f"<|endoftext|> and one merge) to {MAX_BPE_VOCAB:,}",
            )
        elif self.vocab_size is not None:
            raise ConfigError(
                f"--vocab-size applies to the bpe tokenizer only; {self.tokenizer!r} has a "
                "fixed vocabulary"
            )

    @property
    def tokenizer_vocab_size(self) -> int | None:
        """The vocabulary size to train: the given one, or 512 for bpe."""
        if self.tokenizer == "bpe" and self.vocab_size is None:
            return DEFAULT_BPE_VOCAB
        return self.vocab_size


@dataclass(frozen=True)
class TrainConfig:
    """One training run: batch, optimizer, schedule, evaluation and where to write."""

    batch_size: int = setting(8, "Sequences per micro-batch.", "--batch-size")
    grad_accum: int = setting(1, "Micro-batches per optimizer step.", "--grad-accum")
    # optimizer steps; None when only a time budget is set
    max_iters: int | None = setting(2000, "Optimizer steps.", "--max-iters")
    time_budget: float | None = setting(  # seconds; the command line takes 90s, 3m, 1h30m
        None,
        "Wall-clock budget such as 90s or 3m; the LR schedule fits it.",
        "--time",
        unset="none",
    )
    lr: float = setting(3e-3, "Peak learning rate.", "--lr")
    min_lr_ratio: float = setting(
        0.1, "The schedule's last rate as a share of --lr (0: decay to zero).", "--min-lr-ratio"
    )
    # steps of linear warm-up (it scales the cosine's first steps)
    warmup_iters: int = setting(100, "Warm-up steps.", "--warmup")
    weight_decay: float = setting(0.1, "AdamW weight decay.", "--weight-decay")
    optimizer: OptimizerName = setting(
        "adamw",
        f"{', '.join(OPTIMIZERS)} (Muon for the blocks' matrices, AdamW for the rest).",
        "--optimizer",
    )
    muon_lr: float = setting(0.04, "Muon's peak learning rate (--optimizer muon).", "--muon-lr")
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = setting(1.0, "Max gradient norm (0: off).", "--grad-clip")
    schedule: Schedule = setting(
        "cosine", f"LR after warm-up: {', '.join(SCHEDULES)} (warm-up/stable/decay).", "--schedule"
    )
    decay_fraction: float = setting(
        0.2, "With --schedule wsd: the share of the run spent decaying.", "--decay-fraction"
    )
    label_smoothing: float = setting(
        0.0, "Label smoothing of the training loss, e.g. 0.1.", "--label-smoothing"
    )  # the Transformer paper trains with 0.1
    eval_interval: int = setting(250, "Steps between evals.", "--eval-interval")
    eval_iters: int = 20  # batches per periodic validation estimate (or the split, if smaller)
    save_every: int | None = setting(  # None = at every evaluation
        None, "Steps between checkpoints.", "--save-every", unset="at each eval"
    )
    patience: int | None = setting(
        None, "Stop after this many evals without a better val loss.", "--patience", unset="off"
    )
    max_bad_steps: int = 5  # consecutive non-finite steps (each skipped) before giving up
    sample_every: int = setting(
        4, "Evals between samples shown while training (0: never).", "--sample-every"
    )
    log_interval: int = setting(10, "Steps between rows of metrics.jsonl.", "--log-interval")
    seed: int = setting(1337, "Seed for weights and batches.", "--seed")
    # "cuda:1" names one GPU; auto prefers cuda, then mps, then cpu
    device: str = setting("auto", "auto, cpu, cuda or mps.", "--device")
    precision: Precision = setting(  # fp16 trains with a gradient scaler
        "auto", f"{', '.join(PRECISIONS)}.", "--precision"
    )
    compile: Compile = setting(
        "auto", "torch.compile: auto (where earlier runs measured it pays), on, off.", "--compile"
    )
    threads: int | None = None  # CPU threads for torch; None = torch's choice

    def __post_init__(self) -> None:
        check_field_types(self)
        for name in ("batch_size", "grad_accum"):
            require_in(name, getattr(self, name), 1, MAX_BATCH)
        require(
            self.max_iters is not None or self.time_budget is not None,
            "give --max-iters or --time",
        )
        if self.max_iters is not None:
            require_in("max_iters", self.max_iters, 1, MAX_STEPS)
        if self.time_budget is not None:
            require_finite("time_budget", self.time_budget)
            require(self.time_budget > 0, "the time budget must be positive")
        for name in ("lr", "min_lr_ratio", "weight_decay", "beta1", "beta2", "grad_clip"):
            require_finite(name, getattr(self, name))
        require(0 < self.lr < 10, "lr must be in (0, 10)")
        require_finite("muon_lr", self.muon_lr)
        require(0 < self.muon_lr < 10, "muon_lr must be in (0, 10)")
        require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]")
        require_in("warmup_iters", self.warmup_iters, 0, MAX_STEPS)
        require(self.weight_decay >= 0, "weight_decay must be >= 0")
        require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "betas must be in [0, 1)")
        require(self.grad_clip >= 0, "grad_clip must be >= 0 (0 disables it)")
        require_finite("decay_fraction", self.decay_fraction)
        require(0 < self.decay_fraction <= 1, "decay_fraction must be in (0, 1]")
        require_finite("label_smoothing", self.label_smoothing)
        require(0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)")
        for name in ("eval_interval", "eval_iters", "max_bad_steps", "log_interval"):
            require_in(name, getattr(self, name), 1, MAX_STEPS)
        for name in ("save_every", "patience"):
            if getattr(self, name) is not None:
                require_in(name, getattr(self, name), 1, MAX_STEPS)
        require_in("sample_every", self.sample_every, 0, MAX_STEPS, "(0: never)")
        require(0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}")
        if self.threads is not None:
            require_in("threads", self.threads, 1, MAX_THREADS)


@dataclass(frozen=True)
class SampleConfig:
    """How tokens are drawn from the model's logits (applied in the order of the fields;
    see `minigpt.generation.sampling`)."""

    max_new_tokens: int = setting(500, "Tokens to generate.", "--max-new-tokens", "-n")
    repetition_penalty: float = setting(
        1.0, "> 1 discourages tokens seen lately (1 = off).", "--repetition-penalty"
    )
    presence_penalty: float = setting(
        0.0, "Subtracted from every token seen lately.", "--presence-penalty"
    )
    frequency_penalty: float = setting(
        0.0, "Subtracted per time a token was seen.", "--frequency-penalty"
    )
    penalty_window: int = setting(
        64, "How many recent tokens the penalties see.", "--penalty-window"
    )
    temperature: float = setting(
        0.8, "0 = greedy; <1 sharper, >1 flatter.", "--temperature", "--temp"
    )
    top_k: int | None = setting(None, "Keep only the k likeliest tokens.", "--top-k", unset="off")
    top_p: float | None = setting(
        None, "Keep the likeliest tokens up to mass p.", "--top-p", unset="off"
    )
    min_p: float | None = setting(
        None, "Drop tokens less likely than min-p x the likeliest.", "--min-p", unset="off"
    )
    stop: tuple[str, ...] = setting(
        (),
        r"Stop when the text contains this (repeatable; \n is a newline).",
        "--stop",
        unset="none",
    )
    ignore_eos: bool = setting(
        False, "Go on past <|endoftext|>, which otherwise ends a sample.", "--ignore-eos"
    )
    seed: int = setting(1337, "Same seed, same text.", "--seed")
    num_samples: int = setting(
        1,
        "Samples generated together as a batch after one shared prefill (they share one "
        "random stream, so sample 1 of 3 differs from a single sample).",
        "--num-samples",
    )

    def __post_init__(self) -> None:
        if isinstance(self.stop, list):  # JSON has lists, not tuples
            object.__setattr__(self, "stop", tuple(self.stop))
        check_field_types(self)
        require_in("max_new_tokens", self.max_new_tokens, 0, MAX_NEW_TOKENS)
        for name in ("repetition_penalty", "presence_penalty", "frequency_penalty"):
            require_finite(name, getattr(self, name))
        require(
            0 < self.repetition_penalty <= MAX_PENALTY,
            f"repetition_penalty must be in (0, {MAX_PENALTY}] (1 = off)",
        )
        for name in ("presence_penalty", "frequency_penalty"):
            require(
                abs(getattr(self, name)) <= MAX_PENALTY,
                f"{name} must be in [-{MAX_PENALTY}, {MAX_PENALTY}]",
            )
        require(1 <= self.penalty_window <= MAX_BLOCK, f"penalty_window must be in 1..{MAX_BLOCK}")
        require_finite("temperature", self.temperature)
        require(self.temperature >= 0, "temperature must be >= 0 (0 means greedy)")
        if self.top_k is not None:
            require_in("top_k", self.top_k, 1, MAX_VOCAB)
        if self.top_p is not None:
            require_finite("top_p", self.top_p)
            require(0 < self.top_p <= 1, "top_p must be in (0, 1]")
        if self.min_p is not None:
            require_finite("min_p", self.min_p)
            require(0 <= self.min_p <= 1, "min_p must be in [0, 1]")
        require(all(self.stop), "a stop string must not be empty")
        require(0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}")
        require_in("num_samples", self.num_samples, 1, MAX_BATCH, "(use fewer --num-samples)")

    @property
    def penalized(self) -> bool:
        """Whether any penalty is on."""
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )
