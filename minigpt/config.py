"""Typed settings: the model shape (`GPTConfig`), a training run (`TrainConfig`),
a dataset (`DataConfig`) and sampling (`SampleConfig`).

Every field is JSON-native (numbers, strings, booleans, None), so
`asdict -> json -> from_dict` round-trips. Each dataclass validates itself when it
is built and raises `ConfigError` with a message that names the field and the fix;
values read from a stranger's `config.json` go through the same checks.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal, TypeVar

from minigpt.errors import ConfigError

PosEncoding = Literal["learned", "sinusoidal", "rope"]
NormKind = Literal["layernorm", "rmsnorm"]
MLPKind = Literal["gelu", "swiglu"]
Schedule = Literal["cosine", "wsd"]

POS_ENCODINGS: tuple[str, ...] = typing.get_args(PosEncoding)
NORM_KINDS: tuple[str, ...] = typing.get_args(NormKind)
MLP_KINDS: tuple[str, ...] = typing.get_args(MLPKind)
SCHEDULES: tuple[str, ...] = typing.get_args(Schedule)
PRECISIONS = ("auto", "fp32", "bf16", "fp16")

# Upper bounds that keep a hostile or mistyped config from asking for absurd memory
# before anything is allocated. They are far above anything minigpt trains.
MAX_VOCAB = 1 << 21
MAX_WIDTH = 1 << 16
MAX_LAYERS = 1024
MAX_BLOCK = 1 << 20
MAX_PARAMS = 50_000_000_000
MAX_SEED = (1 << 63) - 1  # torch.Generator.manual_seed takes a signed 64-bit integer
MAX_PENALTY = 100.0  # larger penalties only overflow float32 logits

DEFAULT_BPE_VOCAB = 512  # measured best of 512/1024/2048 for the default model (benchmarks/)

T = TypeVar("T")


def _check_field_types(obj: Any) -> None:
    """Reject values whose JSON type does not match the field (e.g. `true` for an int)."""
    hints = typing.get_type_hints(type(obj))
    for f in fields(obj):
        value = getattr(obj, f.name)
        if not _matches(value, hints[f.name]):
            raise ConfigError(
                f"{type(obj).__name__}.{f.name} = {value!r} has the wrong type; "
                f"expected {_describe(hints[f.name])}"
            )


def is_int(value: Any) -> bool:
    """A JSON integer: an int that is not a bool (True is an int in Python)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _matches(value: Any, hint: Any) -> bool:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return any(_matches(value, arg) for arg in typing.get_args(hint))
    if origin is Literal:
        return value in typing.get_args(hint)
    if hint is type(None):
        return value is None
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return is_int(value)
    if hint is float:
        # An int is an acceptable float in JSON ("lr": 1 means 1.0); a bool is not.
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if origin is tuple:  # tuple[X, ...]: a JSON list of X
        (item, _) = typing.get_args(hint)
        return isinstance(value, tuple) and all(_matches(v, item) for v in value)
    return False


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin is tuple:
        return f"a list of {_describe(typing.get_args(hint)[0])}"
    return "null" if hint is type(None) else hint.__name__


def _require(ok: bool, message: str) -> None:
    """Raise `ConfigError(message)` unless `ok`. Not an assert: it survives `python -O`."""
    if not ok:
        raise ConfigError(message)


def _finite(name: str, value: float) -> None:
    _require(math.isfinite(value), f"{name} must be a finite number, got {value!r}")


def from_dict(cls: type[T], data: Any, *, where: str = "config") -> T:
    """Build dataclass `cls` from a JSON object, requiring exactly its fields."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a JSON object for {cls.__name__}")
    names = {f.name for f in fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - names)
    missing = sorted(names - set(data))
    if unknown:
        raise ConfigError(f"{where}: unknown {cls.__name__} keys {unknown}")
    if missing:
        raise ConfigError(f"{where}: missing {cls.__name__} keys {missing}")
    return cls(**data)


def to_dict(obj: Any) -> dict[str, Any]:
    """The JSON-native dictionary of a config dataclass."""
    return asdict(obj)


@dataclass(frozen=True)
class GPTConfig:
    """The shape of a decoder-only GPT (names follow GPT-2 / nanoGPT)."""

    vocab_size: int | None = None  # None: to be taken from the tokenizer
    block_size: int = 256  # the context window: the most tokens the model sees at once
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    n_inner: int | None = None  # MLP hidden width; None = 4*n_embd (gelu), ~8/3*n_embd (swiglu)
    pos_encoding: PosEncoding = "learned"
    norm: NormKind = "layernorm"
    mlp: MLPKind = "gelu"
    bias: bool = True
    dropout: float = 0.0
    tie_embeddings: bool = True  # the unembedding matrix is the embedding matrix
    norm_eps: float = 1e-5
    rope_theta: float = 10000.0

    def __post_init__(self) -> None:
        _check_field_types(self)
        if self.vocab_size is not None:
            _require(1 <= self.vocab_size <= MAX_VOCAB, f"vocab_size must be in 1..{MAX_VOCAB}")
        _require(1 <= self.block_size <= MAX_BLOCK, f"block_size must be in 1..{MAX_BLOCK}")
        _require(1 <= self.n_layer <= MAX_LAYERS, f"n_layer must be in 1..{MAX_LAYERS}")
        _require(1 <= self.n_embd <= MAX_WIDTH, f"n_embd must be in 1..{MAX_WIDTH}")
        _require(1 <= self.n_head <= self.n_embd, "n_head must be in 1..n_embd")
        _require(
            self.n_embd % self.n_head == 0,
            f"n_embd ({self.n_embd}) must be divisible by n_head ({self.n_head}); "
            f"try n_head in {_divisors(self.n_embd)}",
        )
        if self.n_inner is not None:
            _require(1 <= self.n_inner <= 8 * MAX_WIDTH, "n_inner must be positive")
        if self.pos_encoding == "rope":
            _require(self.head_size % 2 == 0, "rope needs an even head size (n_embd / n_head)")
        if self.pos_encoding == "sinusoidal":
            _require(self.n_embd % 2 == 0, "sinusoidal positions need an even n_embd")
        _finite("dropout", self.dropout)
        _require(0.0 <= self.dropout < 1.0, "dropout must be in [0, 1)")
        _finite("norm_eps", self.norm_eps)
        _require(0.0 < self.norm_eps < 1.0, "norm_eps must be in (0, 1)")
        _finite("rope_theta", self.rope_theta)
        _require(self.rope_theta > 1.0, "rope_theta must be > 1")
        _require(
            self.approx_num_params() <= MAX_PARAMS,
            f"this shape has about {self.approx_num_params():.3g} parameters, "
            f"more than minigpt supports ({MAX_PARAMS:.0e})",
        )

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

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
        per_layer = 4 * d * d + mlp_mats * d * h
        embed = (self.vocab_size or 0) * d * (1 if self.tie_embeddings else 2)
        pos = self.block_size * d if self.pos_encoding == "learned" else 0
        return self.n_layer * per_layer + embed + pos


def _divisors(n: int) -> list[int]:
    return [k for k in range(1, min(n, 64) + 1) if n % k == 0]


def _round_up(x: int, multiple: int) -> int:
    return ((x + multiple - 1) // multiple) * multiple


# Named shapes for `minigpt train --preset`, each with the training settings that suit
# it (the TrainConfig defaults are those of "small"). vocab_size comes from the tokenizer.
MODERN = dict(pos_encoding="rope", norm="rmsnorm", mlp="swiglu", bias=False)
GPT2_STYLE = dict(pos_encoding="learned", norm="layernorm", mlp="gelu", bias=True)
PRESETS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "tiny": (dict(n_layer=2, n_head=2, n_embd=32, block_size=64, **MODERN), {}),
    # The default: measured best on a 2-core CPU in a 2-minute budget (see benchmarks/).
    "small": (dict(n_layer=4, n_head=4, n_embd=128, block_size=128, **MODERN), {}),
    "medium": (
        dict(n_layer=6, n_head=6, n_embd=384, block_size=256, dropout=0.2, **MODERN),
        dict(batch_size=32, lr=1e-3),
    ),
    "gpt2": (
        dict(n_layer=12, n_head=12, n_embd=768, block_size=1024, **GPT2_STYLE),
        dict(batch_size=8, lr=6e-4, warmup_iters=700, beta2=0.95),
    ),
}
DEFAULT_PRESET = "small"


def preset(name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The GPTConfig fields and TrainConfig fields of a named preset."""
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)}")
    model, train = PRESETS[name]
    return dict(model), dict(train)


@dataclass(frozen=True)
class DataConfig:
    """How a text file becomes a dataset: tokenizer, validation split, text encoding."""

    tokenizer: str = "bpe"  # "char", "bpe", or a tiktoken encoding name such as "gpt2"
    vocab_size: int | None = None  # for "bpe": the trained vocabulary's size (default 512)
    val_fraction: float = 0.1
    encoding: str = "utf-8"  # how the input file's bytes are decoded

    def __post_init__(self) -> None:
        _check_field_types(self)
        _finite("val_fraction", self.val_fraction)
        _require(
            0.0 < self.val_fraction < 1.0,
            f"val_fraction must be between 0 and 1 (exclusive), got {self.val_fraction}",
        )
        if self.tokenizer == "bpe" and self.vocab_size is not None:
            _require(
                257 < self.vocab_size <= MAX_VOCAB,
                "the bpe tokenizer needs --vocab-size above 257 (256 bytes + 1 special token)",
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

    batch_size: int = 16
    grad_accum: int = 1  # micro-batches summed into one optimizer step
    max_iters: int | None = 2000  # optimizer steps; None when only a time budget is set
    time_budget: float | None = None  # seconds of training; the LR schedule is fitted to it
    lr: float = 3e-3
    min_lr_ratio: float = 0.1  # the cosine decays to lr * min_lr_ratio
    warmup_iters: int = 100  # steps of linear warm-up (it scales the cosine's first steps)
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.99
    grad_clip: float = 1.0  # max global gradient norm; 0 disables clipping
    schedule: Schedule = "cosine"  # after warm-up: cosine decay, or warm-up/stable/decay
    decay_fraction: float = 0.2  # "wsd": the share of the run spent decaying linearly
    label_smoothing: float = 0.0  # the Transformer paper trains with 0.1
    eval_interval: int = 250
    eval_iters: int = 20  # batches per periodic validation estimate
    save_every: int | None = None  # steps between checkpoints; None = at every evaluation
    patience: int | None = None  # stop after this many evaluations without a better val loss
    max_bad_steps: int = 5  # consecutive non-finite steps (each skipped) before giving up
    sample_every: int = 4  # evaluations between short samples shown while training; 0 = never
    log_interval: int = 10
    seed: int = 1337
    device: str = "auto"  # "auto" (cuda > mps > cpu), "cpu", "cuda", "cuda:1", "mps"
    precision: str = "auto"  # "auto", "fp32", "bf16", "fp16" (with a gradient scaler)
    compile: str = "auto"  # torch.compile: "auto" (on for CUDA), "on", "off"
    threads: int | None = None  # CPU threads for torch; None = torch's choice

    def __post_init__(self) -> None:
        _check_field_types(self)
        _require(self.batch_size >= 1, "batch_size must be at least 1")
        _require(self.grad_accum >= 1, "grad_accum must be at least 1")
        _require(
            self.max_iters is not None or self.time_budget is not None,
            "give --max-iters or --time",
        )
        if self.max_iters is not None:
            _require(self.max_iters >= 1, "max_iters must be at least 1")
        if self.time_budget is not None:
            _finite("time_budget", self.time_budget)
            _require(self.time_budget > 0, "the time budget must be positive")
        for name in ("lr", "min_lr_ratio", "weight_decay", "beta1", "beta2", "grad_clip"):
            _finite(name, getattr(self, name))
        _require(0 < self.lr < 10, "lr must be in (0, 10)")
        _require(0 <= self.min_lr_ratio <= 1, "min_lr_ratio must be in [0, 1]")
        _require(self.warmup_iters >= 0, "warmup_iters must be >= 0")
        _require(self.weight_decay >= 0, "weight_decay must be >= 0")
        _require(0 <= self.beta1 < 1 and 0 <= self.beta2 < 1, "betas must be in [0, 1)")
        _require(self.grad_clip >= 0, "grad_clip must be >= 0 (0 disables it)")
        _finite("decay_fraction", self.decay_fraction)
        _require(0 < self.decay_fraction <= 1, "decay_fraction must be in (0, 1]")
        _finite("label_smoothing", self.label_smoothing)
        _require(0 <= self.label_smoothing < 1, "label_smoothing must be in [0, 1)")
        _require(self.eval_interval >= 1, "eval_interval must be at least 1")
        _require(self.eval_iters >= 1, "eval_iters must be at least 1")
        _require(self.save_every is None or self.save_every >= 1, "save_every must be >= 1")
        _require(self.patience is None or self.patience >= 1, "patience must be at least 1")
        _require(self.max_bad_steps >= 1, "max_bad_steps must be at least 1")
        _require(self.sample_every >= 0, "sample_every must be >= 0 (0: never)")
        _require(self.log_interval >= 1, "log_interval must be at least 1")
        _require(0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}")
        _require(self.precision in PRECISIONS, f"precision must be one of {', '.join(PRECISIONS)}")
        _require(self.compile in ("auto", "on", "off"), "compile must be auto, on or off")
        if self.threads is not None:
            _require(self.threads >= 1, "threads must be at least 1")


@dataclass(frozen=True)
class SampleConfig:
    """How tokens are drawn from the model's logits (applied in the order of the fields;
    see `minigpt.generation.sampling`)."""

    max_new_tokens: int = 500
    repetition_penalty: float = 1.0  # > 1 discourages tokens seen in the penalty window
    presence_penalty: float = 0.0  # subtracted once from every token seen in the window
    frequency_penalty: float = 0.0  # subtracted once per occurrence in the window
    penalty_window: int = 64  # how many of the latest context tokens the penalties see
    temperature: float = 0.8  # 0 = greedy argmax
    top_k: int | None = None  # keep only the k likeliest tokens
    top_p: float | None = None  # keep the smallest set whose probability reaches p
    min_p: float | None = None  # drop tokens less likely than min_p x the likeliest
    stop: tuple[str, ...] = ()  # stop when the text contains one of these
    seed: int = 1337
    num_samples: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.stop, list):  # JSON has lists, not tuples
            object.__setattr__(self, "stop", tuple(self.stop))
        _check_field_types(self)
        _require(self.max_new_tokens >= 0, "max_new_tokens must be >= 0")
        for name in ("repetition_penalty", "presence_penalty", "frequency_penalty"):
            _finite(name, getattr(self, name))
        _require(
            0 < self.repetition_penalty <= MAX_PENALTY,
            f"repetition_penalty must be in (0, {MAX_PENALTY}] (1 = off)",
        )
        for name in ("presence_penalty", "frequency_penalty"):
            _require(
                abs(getattr(self, name)) <= MAX_PENALTY,
                f"{name} must be in [-{MAX_PENALTY}, {MAX_PENALTY}]",
            )
        _require(1 <= self.penalty_window <= MAX_BLOCK, f"penalty_window must be in 1..{MAX_BLOCK}")
        _finite("temperature", self.temperature)
        _require(self.temperature >= 0, "temperature must be >= 0 (0 means greedy)")
        if self.top_k is not None:
            _require(self.top_k >= 1, "top_k must be at least 1")
        if self.top_p is not None:
            _finite("top_p", self.top_p)
            _require(0 < self.top_p <= 1, "top_p must be in (0, 1]")
        if self.min_p is not None:
            _finite("min_p", self.min_p)
            _require(0 <= self.min_p <= 1, "min_p must be in [0, 1]")
        _require(all(self.stop), "a stop string must not be empty")
        _require(0 <= self.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}")
        _require(self.num_samples >= 1, "num_samples must be at least 1")

    @property
    def penalized(self) -> bool:
        """Whether any penalty is on."""
        return (
            self.repetition_penalty != 1.0
            or self.presence_penalty != 0.0
            or self.frequency_penalty != 0.0
        )


def parse_duration(text: str) -> float:
    """Seconds in a duration such as "90", "90s", "3m", "1h30m" or "2.5m"."""
    units = {"h": 3600.0, "m": 60.0, "s": 1.0}
    rest = text.strip().lower()
    total, seen = 0.0, False
    while rest:
        i = 0
        while i < len(rest) and (rest[i].isdigit() or rest[i] == "."):
            i += 1
        number, unit = rest[:i], rest[i : i + 1] or "s"
        if not number or unit not in units:
            raise ConfigError(f"cannot read the duration {text!r}; write e.g. 90s, 3m or 1h30m")
        try:
            total += float(number) * units[unit]
        except ValueError as e:
            raise ConfigError(f"cannot read the duration {text!r}; write e.g. 90s or 3m") from e
        rest, seen = rest[i + 1 :], True
    if not seen or not math.isfinite(total) or total <= 0:
        raise ConfigError(f"the duration {text!r} must be positive, e.g. 90s or 3m")
    return total
