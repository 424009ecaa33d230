"""What a generation needs in memory, counted before anything is allocated, and what
memory is available.

A generation that would need more than is available is refused before it starts: on
Linux the kernel kills a process that outgrows memory, with no message (`minigpt
sample --num-samples 10^6` was killed at 12.6 GB). The estimate for n samples of up to
`max_new_tokens` tokens counts:

- per sample, on the model's device: the KV cache (keys and values of every layer for
  the prompt and the new tokens, within block_size), one decoding step's activations
  and attention scores, the context's token ids, and the logits over the vocabulary in
  float32 with every copy that sampling makes of them while one token is drawn
  (`logit_bytes`: the finite copy, the UTF-8 mask and the masked copy, penalty counts,
  temperature, the sorts of top-k and top-p with their int64 indices, min-p, softmax,
  the draw, the log-probabilities);
- per sample and generated token, in the process's memory: what the caller keeps
  (`TextGeneration` keeps each id and log-probability as Python objects, the text and,
  with --show-probs, the alternatives; --json builds a record of it all at the end);
- once: the prompt's prefill (activations of every prompt position, attention scores).

The counts follow what the code allocates, and were checked against the peak resident
memory of `minigpt sample` (tests/hostile/test_bounds.py); an eighth is added for the
allocator's slack, and three quarters more to logits small enough for glibc's heap,
which keeps what it once held. Available memory is what the system says this process can still
take: CUDA's free memory, or the smaller of the kernel's MemAvailable and the headroom
under the process's cgroup limit (a container's limit is where the kernel kills).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import torch

from minigpt.config import GPTConfig, SampleConfig
from minigpt.errors import GenerationError
from minigpt.model import GPT

# The allocator's slack on top of what the tensors and objects hold: measured peaks
# were 1.0-1.21x the live bytes, depending on the machine's allocator and timing.
SLACK = 1.25
# glibc serves a buffer under 32 MiB from its heap once one that size was freed, and the
# heap keeps what it once held: logits that small measured 1.45-1.6x their live bytes.
HEAP_BUFFER = 32 * 2**20
HEAP_SLACK = 1.75
SAMPLE_OBJECTS = 2048  # a sample's own Python objects: its Completion, text stream, decoder
# Bytes kept per generated token (per sample) by TextGeneration: the id and the
# log-probability as Python objects in lists (about 40 + 32), and the text (up to 4 bytes
# a character); with --show-probs each alternative is an (id, log-probability) tuple.
TOKEN_RECORD = 96
ALTERNATIVE_RECORD = 128
# A --json record per token: the rounded log-probability, the JSON text and its encoding;
# per alternative, its [id, log-probability] list and JSON text.
TOKEN_JSON = 64
ALTERNATIVE_JSON = 96
# Bytes per sample and vocabulary entry that each stage of drawing a token allocates
# beyond what it is given (see `logit_bytes`); read from the code, checked by measuring.
LOGITS_STAGES = {
    "mask": 5,  # the rows of the UTF-8 mask (bool) and the masked copy, held to the draw
    "finite": 11,  # the clamped copy (4), isfinite: abs (4) and three bool masks
    # counts, seen, the penalised values, clamped and checked: 26 by the code, which fell
    # 1% short of a measured peak
    "penalties": 30,
    "temperature": 8,  # shifted, then divided
    "top_k": 13,  # int64 sort indices, the mask, the result
    "top_p": 27,  # sorted values and int64 order, softmax, cumsum, masks, the result
    "min_p": 9,  # softmax, the mask, the result
    "draw": 8,  # softmax, and the draw's exponential noise
    "logprobs": 4,  # the log-probabilities recorded
}


def record_bytes(top: int = 0, as_json: bool = False) -> int:
    """Bytes a `TextGeneration` keeps per generated token of one sample, with `top`
    alternatives per token and, `as_json`, the JSON record built from it at the end."""
    kept = TOKEN_RECORD + top * ALTERNATIVE_RECORD
    if as_json:
        kept += TOKEN_JSON + top * ALTERNATIVE_JSON
    return kept


def logit_bytes(config: SampleConfig, top: int = 0) -> int:
    """Bytes per sample and vocabulary entry alive at once while one token is drawn
    (float32 logits, int64 sort indices, bool masks), following `generate.continue_from`
    and `sampling.draw` step by step.

    Held through a step: the model's logits, their finite copy (8 bytes) and the UTF-8
    mask with the masked copy (counted whatever the tokenizer: a char vocabulary,
    which needs no mask, is small). On top,
    the largest stage's own buffers: making the next logits finite (the previous
    finite copy still held, the clamped copy, `isfinite`'s temporaries), the
    penalties, or after them (their result kept to the end of the draw) the logits
    between two filters plus the largest filter's temporaries, and the recorded
    log-probabilities."""
    stages = [LOGITS_STAGES["finite"], LOGITS_STAGES["logprobs"] + (4 if top else 0)]
    if config.penalized:
        stages.append(LOGITS_STAGES["penalties"])
    if config.temperature > 0:
        filters = [LOGITS_STAGES["temperature"], LOGITS_STAGES["draw"]]
        for name, on in (
            ("top_k", config.top_k is not None),
            ("top_p", config.top_p is not None),
            ("min_p", config.min_p is not None),
        ):
            if on:
                filters.append(LOGITS_STAGES[name])
        stages.append((4 if config.penalized else 0) + 4 + max(filters))
    return 8 + LOGITS_STAGES["mask"] + max(stages)


@dataclass(frozen=True)
class GenerationMemory:
    """Bytes a generation needs at its peak, by what holds them."""

    kv_cache: int
    logits: int  # the logits over the vocabulary and the copies sampling makes
    activations: int  # a step's activations, the context's ids, the prompt's prefill
    records: int  # what the caller keeps: ids, log-probabilities, text (host memory)

    @property
    def on_device(self) -> int:
        return self.kv_cache + self.logits + self.activations

    @property
    def total(self) -> int:
        return self.on_device + self.records


@dataclass(frozen=True)
class Plan:
    """A generation to size: `rows` sequences after a `prompt_len`-token prompt; the
    caller keeps `kept_per_token` bytes per generated token of each row (`record_bytes`)
    and asks for `top` alternatives per token."""

    rows: int
    prompt_len: int
    sampling: SampleConfig
    top: int = 0
    kept_per_token: int = 0
    use_cache: bool = True


def estimate(config: GPTConfig, itemsize: int, plan: Plan) -> GenerationMemory:
    """What `plan` needs at the peak, for a model of this shape whose weights (and so
    its KV cache) take `itemsize` bytes a value."""
    c, h, heads = config.n_embd, config.hidden_size, config.n_head
    tokens = plan.sampling.max_new_tokens
    capacity = min(plan.prompt_len + tokens, config.block_size)
    positions = _positions_per_step(config.block_size, plan.prompt_len + tokens, plan.use_cache)
    # A step's activations (residual, norms, q/k/v, rope, MLP; float32) and attention scores.
    step = positions * ((16 * c + 4 * h) + heads * capacity) * 4
    ids = 2 * capacity * 8  # the context's ids, and the copy made when one is appended
    prompt = min(plan.prompt_len, config.block_size)
    prefill = prompt * (16 * c + 4 * h) * 4 + heads * prompt * prompt * 4
    # keys and values of every layer: kv_size (n_kv_head * head_size) each, c without GQA
    kv = 2 * config.n_layer * capacity * config.kv_size * itemsize if plan.use_cache else 0
    vocab = config.vocab_size or 0
    logits = plan.rows * vocab * logit_bytes(plan.sampling, plan.top)
    if plan.rows * vocab * 4 < HEAP_BUFFER:
        logits = int(logits * HEAP_SLACK)
    kept = SAMPLE_OBJECTS + tokens * plan.kept_per_token if plan.kept_per_token else 0
    return GenerationMemory(
        kv_cache=_slack(plan.rows * kv),
        logits=_slack(logits),
        activations=_slack(plan.rows * (step + ids) + prefill),
        records=_slack(plan.rows * kept),
    )


def _positions_per_step(block_size: int, length: int, use_cache: bool) -> int:
    """The most positions one row runs through the model in one step: one with the
    cache, until the window slides and half a window is run again (`ModelContext`);
    without the cache, the whole context."""
    if not use_cache:
        return min(length, block_size)
    return max(block_size // 2, 1) if length > block_size else 1


def _slack(n: int) -> int:
    return int(n * SLACK)


@dataclass(frozen=True)
class Available:
    """Bytes free where a generation puts things: the model's device (None: the host's
    memory, or nobody says) and the host's memory (None: nobody says)."""

    device: int | None
    host: int | None

    @classmethod
    def now(cls, device: torch.device) -> Available:
        host = host_available()
        return cls(None if device.type == "cpu" else available_memory(device), host)

    def shortfall(self, need: GenerationMemory) -> tuple[int, int] | None:
        """(needed, available) bytes where `need` does not fit, else None."""
        on_host = need.records if self.device is not None else need.total
        if self.device is not None and need.on_device > self.device:
            return need.on_device, self.device
        if self.host is not None and on_host > self.host:
            return on_host, self.host
        return None


def check_fits(model: GPT, plan: Plan, free: Available | None = None) -> None:
    """Refuse `plan` when it needs more than is available (`free`, default: what the
    system says now), in one line naming the estimate, what is available and the largest
    --num-samples (or --max-new-tokens) that fits. Nothing is checked where the system
    does not say what is free."""
    config, itemsize = model.config, model.dtype.itemsize
    free = free or Available.now(model.device)
    parts = estimate(config, itemsize, plan)
    short = free.shortfall(parts)
    if short is None:
        return
    need, available = short
    samples = f"{plan.rows:,} sample{'s' if plan.rows > 1 else ''}"
    what = (
        f"{samples} of up to {plan.sampling.max_new_tokens:,} tokens "
        f"{'need' if plan.rows > 1 else 'needs'} about "
        f"{size(need)} of memory (logits over the {config.vocab_size:,}-token vocabulary "
        f"and their sampling copies {size(parts.logits)}, KV cache {size(parts.kv_cache)}, "
        f"activations {size(parts.activations)}, text {size(parts.records)}) but "
        f"{size(available)} is available"
    )
    raise GenerationError(f"{what}; {_fix(config, itemsize, plan, free)}")


def _fix(config: GPTConfig, itemsize: int, plan: Plan, free: Available) -> str:
    """The largest --num-samples that fits, else the largest --max-new-tokens for one."""
    sampling = plan.sampling

    def fits(changed: Plan) -> bool:
        return free.shortfall(estimate(config, itemsize, changed)) is None

    rows = _largest(lambda n: fits(replace(plan, rows=n)), plan.rows - 1)
    if rows > 0:
        return f"use --num-samples {rows:,} or fewer"
    one = replace(plan, rows=1)
    tokens = _largest(
        lambda n: fits(replace(one, sampling=replace(sampling, max_new_tokens=n))),
        sampling.max_new_tokens - 1,
    )
    if tokens > 0:
        return f"use --num-samples 1 and --max-new-tokens {tokens:,} or fewer"
    return "use a smaller model, or free some memory"


def _largest(fits: Callable[[int], bool], most: int) -> int:
    """The largest n in 1..most with fits(n) (fits is monotone), or 0 if none."""
    low, high = 0, most
    while low < high:
        mid = (low + high + 1) // 2
        if fits(mid):
            low = mid
        else:
            high = mid - 1
    return low


def size(n: int) -> str:
    """Bytes for a person: GiB, or MiB below a tenth of one."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**30 / 10 else f"{n / 2**20:.0f} MiB"


def available_memory(device: torch.device) -> int | None:
    """Bytes this process can still allocate on `device`; None where nobody says."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    if device.type == "cpu":
        return host_available()
    return None


def host_available() -> int | None:
    """The smaller of what the kernel could give (MemAvailable: free memory and caches
    it can drop) and the headroom under this process's cgroup memory limits."""
    known = [n for n in (_meminfo_available(), _cgroup_headroom()) if n is not None]
    return min(known) if known else None


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:  # elsewhere, the free pages (no caches counted: the smaller figure)
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def _cgroup_headroom(root: Path = Path("/sys/fs/cgroup")) -> int | None:
    """The least (limit - usage) over this process's cgroup (v2) and its parents."""
    try:
        lines = Path("/proc/self/cgroup").read_text(encoding="utf-8").splitlines()
    except OSError:
        return None
    paths = [line[3:] for line in lines if line.startswith("0::")]
    if not paths:
        return None
    group = (root / paths[0].lstrip("/")).resolve()
    rooms = []
    while True:
        room = _headroom(group)
        if room is not None:
            rooms.append(room)
        if group == root or root not in group.parents:
            break
        group = group.parent
    return min(rooms) if rooms else None


def _headroom(group: Path) -> int | None:
    try:
        limit = (group / "memory.max").read_text(encoding="ascii").strip()
        used = int((group / "memory.current").read_text(encoding="ascii").strip())
    except (OSError, ValueError):
        return None
    return None if limit == "max" else max(int(limit) - used, 0)
