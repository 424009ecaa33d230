"""Speed choices made by measurement on the user's machine, remembered per machine.

Which way of computing is fastest depends on the machine: bf16 autocast trains a
model faster than fp32 on a CPU with bf16 units (AMX) and ten times slower on one
without them; oneDNN's prepacked matmuls decode faster than PyTorch's default on some
CPUs and slower on others. So minigpt does not guess. A choice between candidates
(callables that each do the same work one way) is made by:

- timing each candidate on the real model's own shapes for a moment (`BestOfTimer`:
  a warm-up call, then batches in rotation until a budget of at most a second is
  spent, less for quick calls; the best batch's time per call counts, the figure
  least disturbed by other work on the machine);
- keeping the baseline (the plain way) unless another candidate is faster by more than
  `MARGIN` (5%): a smaller difference is within the noise of timing, and the
  baseline is the one whose numbers a learner can check by hand;
- remembering the measured times in a JSON file under the user's cache directory
  (`cache_dir`), keyed by the machine (`machine_fingerprint`: CPU model and flags or
  GPU, torch version, threads) and by what was measured on which shape, so a later
  run on the same machine and shape decides at once. A damaged or foreign cache file
  is ignored and rewritten, never trusted and never fatal.
- not measuring at all while other work leaves fewer free cores than torch computes
  with (`machine_busy`): threads that wait for a busy core stall every parallel
  operation, a kernel with many short ones more than one with few long ones, so the
  times would rank the candidates by how they suffer, not by how they run (on a
  2-core AVX2 machine with another process running, bf16 autocast timed 1.15x fp32,
  though it is ten times slower there on a quiet machine). The baseline is used, and
  nothing is kept, so a quieter run measures.

The timer is injectable (anything with `Timer`'s call), so tests drive the decisions
with made-up times. `Decision` carries the choice and a line that says why, with the
measured ratios, and whether they came from the cache.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import platform
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch

from minigpt.fileio import PathLike, open_regular, read_json_object, write_atomic

MARGIN = 0.05  # another candidate must be this much faster (5%) to beat the baseline
BUDGET_S = 1.0  # seconds of timing per decision at most, shared by the candidates
MIN_BATCH_S = 0.01  # a timed batch repeats a quick call until it lasts this long
CACHE_ENV = "MINIGPT_CACHE_DIR"  # overrides where measurements are kept
CACHE_FORMAT = 1
MAX_CACHE_BYTES = 64 * 1024  # one measurement's file; anything larger is not ours
MAX_NOTE_CHARS = 300  # a rejected candidate's reason, as stored
CPUINFO_BYTES = 1 << 20
BUSY_WINDOW_S = 0.2  # how long the cores are watched before measuring

Candidates = Mapping[str, Callable[[], object]]


class Timer(Protocol):
    """Seconds per call of each candidate (what a decision compares)."""

    def __call__(self, candidates: Candidates) -> dict[str, float]: ...


@dataclass(frozen=True)
class BestOfTimer:
    """Warm up each candidate once, then time batches of calls in rotation (a, b, a, b,
    ...) until each has used its share of the time; the best batch's seconds per call.

    A candidate's share is `calls_share` times its warm-up call, at least `min_share_s`,
    at most an equal part of `budget_s`: a quick call needs less time to be timed well.
    One whose warm-up call alone takes its share is judged by that call: it is so slow
    that a second look would not change the verdict, and a long call's one-time costs
    are a small part of it.
    """

    budget_s: float = BUDGET_S
    min_batch_s: float = MIN_BATCH_S
    min_share_s: float = 0.1
    calls_share: int = 25

    def __call__(self, candidates: Candidates) -> dict[str, float]:
        most = self.budget_s / max(len(candidates), 1)
        best: dict[str, float] = {}
        calls: dict[str, int] = {}
        left: dict[str, float] = {}  # seconds of its share a candidate has not used yet
        for name, fn in candidates.items():
            first = _seconds(fn, 1)
            left[name] = min(most, max(self.min_share_s, self.calls_share * first)) - first
            if left[name] <= 0:
                best[name] = first
            else:  # enough calls per batch that the clock's resolution does not matter
                calls[name] = max(1, math.ceil(self.min_batch_s / max(first, 1e-9)))
        while calls:
            for name in list(calls):
                per_call = _seconds(candidates[name], calls[name])
                best[name] = min(best.get(name, math.inf), per_call)
                left[name] -= per_call * calls[name]
                if left[name] <= 0:
                    del calls[name]
        return best


def _seconds(fn: Callable[[], object], calls: int) -> float:
    """Seconds per call over `calls` calls in a row."""
    t0 = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - t0) / calls


@dataclass(frozen=True)
class Decision:
    """A choice between ways of computing, and why it was made."""

    choice: str  # the candidate taken
    why: str  # e.g. "measured on this model's training step: bf16 autocast 0.42x fp32"
    seconds: dict[str, float] = field(default_factory=dict)  # per call; {}: not measured
    cached: bool = False  # the times came from an earlier run on this machine


@dataclass(frozen=True)
class Measurement:
    """What a decision is made from: seconds per call of the candidates that ran, and
    the candidates that could not be used, with the reason."""

    seconds: dict[str, float]
    rejected: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"seconds": dict(self.seconds), "rejected": dict(self.rejected)}


def fastest(measured: Measurement, baseline: str, margin: float = MARGIN) -> str:
    """The candidate to use: the fastest usable one when it beats `baseline` by more
    than `margin` (its speed above (1 + margin) times the baseline's), else the baseline."""
    usable = {n: s for n, s in measured.seconds.items() if n not in measured.rejected}
    if baseline not in usable:
        return min(usable, key=usable.__getitem__) if usable else baseline
    best = min(usable, key=usable.__getitem__)
    if usable[baseline] / usable[best] > 1 + margin:
        return best
    return baseline


def describe(
    measured: Measurement, baseline: str, labels: Mapping[str, str], what: str, cached: bool
) -> str:
    """Why, in one clause: the speed of each other candidate as a multiple of the
    baseline's ("bf16 autocast 0.42x fp32"), those that could not be used, and where the
    figures come from."""
    base = measured.seconds.get(baseline)
    parts = []
    for name in labels:
        if name == baseline:
            continue
        if name in measured.rejected:
            parts.append(f"{labels[name]} not usable: {measured.rejected[name]}")
        elif base and name in measured.seconds:
            parts.append(f"{labels[name]} {base / measured.seconds[name]:.2f}x {labels[baseline]}")
    where = "measured earlier on this machine (cached)" if cached else "measured"
    return f"{where} on {what}: {', '.join(parts) or 'nothing to compare'}"


def decide(
    key: Mapping[str, Any],
    measure: Callable[[], Measurement],
    *,
    baseline: str,
    labels: Mapping[str, str],
    what: str,
    cache: SpeedCache | None,
    margin: float = MARGIN,
    accept: Callable[[str], str | None] | None = None,
) -> Decision:
    """The fastest candidate for `key`: from the cache when it holds a measurement for
    it, else from `measure()` (kept in the cache for next time).

    `accept(name)` may refuse the fastest for a reason the key does not cover (the
    weights of this very model, not its shape): it returns why, and the next fastest
    is tried; the baseline is never refused. What it refuses is not cached."""
    measured = cache.get(key) if cache is not None else None
    cached = measured is not None
    if measured is None:
        busy = machine_busy()
        if busy:
            return Decision(baseline, f"not measured, {busy}; a quieter run will measure")
        measured = measure()
        if cache is not None:
            cache.put(key, measured)
    choice = fastest(measured, baseline, margin)
    while choice != baseline and accept is not None and (problem := accept(choice)):
        rejected = {**measured.rejected, choice: problem}
        measured = Measurement(measured.seconds, rejected)
        choice = fastest(measured, baseline, margin)
    why = describe(measured, baseline, labels, what, cached)
    return Decision(choice, why, dict(measured.seconds), cached)


def machine_busy(window_s: float = BUSY_WINDOW_S) -> str | None:
    """Why the machine is too busy to measure on, or None: other processes keep so
    many cores busy that fewer than torch's threads are free (half a core spared).
    The cores are watched for `window_s` (`CoreWatch`)."""
    watch = CoreWatch()
    time.sleep(window_s)
    return watch.verdict()


class CoreWatch:
    """Watches how busy other processes keep the cores from its creation to
    `verdict()`: over a sleep (`machine_busy`) or over this process's own work, such
    as the training steps it times, which then needs no wait of its own.

    Linux says how busy the cores are (/proc/stat, this process's own time taken
    out); elsewhere the load average over the last minute stands in for it (it lags:
    a run that just ended still counts)."""

    def __init__(self) -> None:
        self.first, self.own, self.start = _cpu_times(), time.process_time(), time.perf_counter()

    def verdict(self) -> str | None:
        """Why the cores were too busy since the watch began, or None."""
        cores, threads = os.cpu_count() or 1, torch.get_num_threads()
        busy = self._busy_cores(cores)
        if busy is None:
            try:
                busy = os.getloadavg()[0]
            except (OSError, AttributeError):  # no load average on this system
                return None
        if cores - busy >= threads - 0.5:
            return None
        return (
            f"the machine is busy ({busy:.1f} of {cores} cores taken by other work; minigpt "
            f"computes with {threads} thread{'' if threads == 1 else 's'})"
        )

    def _busy_cores(self, cores: int) -> float | None:
        """How many cores other processes kept busy, from /proc/stat."""
        second = _cpu_times()  # torch's threads may still spin: their time is our own
        own, seconds = time.process_time() - self.own, time.perf_counter() - self.start
        if self.first is None or second is None or second[0] <= self.first[0] or seconds <= 0:
            return None
        total, idle = second[0] - self.first[0], second[1] - self.first[1]
        return max(0.0, (total - idle) / total * cores - own / seconds)


def _cpu_times() -> tuple[int, int] | None:
    """(all, idle) clock ticks of every CPU so far, from /proc/stat's first line."""
    try:
        with open_regular(Path("/proc/stat")) as f:
            line = f.readline(4096).decode("ascii", "replace")
        ticks = [int(v) for v in line.split()[1:]]
    except (OSError, ValueError):
        return None
    if len(ticks) < 5:
        return None
    return sum(ticks[:8]), ticks[3] + ticks[4]  # user..steal; idle + iowait


# ---------------------------------------------------------------------------------
# Where measurements are kept, and what they are keyed by.


def cache_dir(override: PathLike | None = None) -> Path:
    """Where minigpt keeps its measurements: `override`, else $MINIGPT_CACHE_DIR, else
    $XDG_CACHE_HOME/minigpt, else ~/.cache/minigpt."""
    if override is not None:
        return Path(override)
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "minigpt"


class SpeedCache:
    """Measurements as JSON files in one directory, one file per key (its hash in the
    name, the whole key inside, checked on reading)."""

    def __init__(self, directory: PathLike) -> None:
        self.directory = Path(directory)

    def path(self, key: Mapping[str, Any]) -> Path:
        digest = hashlib.sha256(_canonical(key).encode()).hexdigest()[:24]
        return self.directory / f"speed-{digest}.json"

    def get(self, key: Mapping[str, Any]) -> Measurement | None:
        """The measurement kept for `key`, or None: never measured, or a file that is
        unreadable, damaged, too large or for another key (it is rewritten later)."""
        try:
            data = read_json_object(self.path(key), MAX_CACHE_BYTES)
        except (OSError, ValueError):
            return None
        if data.get("format_version") != CACHE_FORMAT or data.get("key") != _plain(key):
            return None
        return _measurement(data.get("measured"))

    def put(self, key: Mapping[str, Any], measured: Measurement) -> None:
        """Keep `measured` for `key`, atomically; a cache that cannot be written (a
        read-only home, a full disk) only means measuring again next time."""
        record = {"format_version": CACHE_FORMAT, "key": _plain(key),
                  "measured": measured.to_json()}  # fmt: skip
        path = self.path(key)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if path.is_symlink():  # replace the link itself, never what it points to
                path.unlink()
            write_atomic(path, json.dumps(record, indent=1).encode())
        except OSError:
            pass


def _canonical(key: Mapping[str, Any]) -> str:
    return json.dumps(key, sort_keys=True, separators=(",", ":"), default=str)


def _plain(key: Mapping[str, Any]) -> Any:
    """The key as it reads back from JSON (tuples become lists)."""
    return json.loads(_canonical(key))


def _measurement(data: Any) -> Measurement | None:
    """A stored measurement with every value checked, or None."""
    if not isinstance(data, dict):
        return None
    seconds, rejected = data.get("seconds"), data.get("rejected")
    if not isinstance(seconds, dict) or not isinstance(rejected, dict) or not seconds:
        return None
    for v in seconds.values():
        if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v < math.inf:
            return None
    if not all(isinstance(v, str) and len(v) <= MAX_NOTE_CHARS for v in rejected.values()):
        return None
    return Measurement({k: float(v) for k, v in seconds.items()}, dict(rejected))


def machine_fingerprint(device: torch.device, threads: int) -> dict[str, Any]:
    """What a measurement depends on besides the shape: the processor (CPU model and
    its feature flags, or the GPU), the torch build, the threads, the device."""
    fingerprint: dict[str, Any] = {
        "device": device.type,
        "torch": torch.__version__,
        "threads": threads,
        "machine": platform.machine(),
        **_cpu_identity(),
    }
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        fingerprint["gpu"] = torch.cuda.get_device_name(index)
        fingerprint["capability"] = list(torch.cuda.get_device_capability(index))
    return fingerprint


def _cpu_identity() -> dict[str, str]:
    """The CPU's model name and a hash of its feature flags (Linux's /proc/cpuinfo;
    elsewhere what `platform` says)."""
    try:
        with open_regular(Path("/proc/cpuinfo")) as f:
            text = f.read(CPUINFO_BYTES).decode("utf-8", "replace")
    except OSError:
        text = ""
    found: dict[str, str] = {}
    for line in text.splitlines():  # the first processor's lines are enough
        label, _, value = line.partition(":")
        label = {"Features": "flags"}.get(label.strip(), label.strip())
        if label in ("model name", "flags") and label not in found:
            found[label] = value.strip()
    flags = " ".join(sorted(found.get("flags", "").split()))
    digest = hashlib.sha256(flags.encode()).hexdigest()[:16] if flags else ""
    name = found.get("model name") or platform.processor()
    return {"cpu": name[:MAX_NOTE_CHARS], "cpu_flags": digest}
