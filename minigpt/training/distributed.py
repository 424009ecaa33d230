"""Several training processes: torchrun's environment, DistributedDataParallel, and the
few collectives the training loop needs.

`torchrun --nproc_per_node=N -m -- minigpt train ...` (what `minigpt train --nproc N`
runs; the `--` keeps torchrun from reading minigpt's `--run` as its own `--run-path`)
starts N processes with RANK, WORLD_SIZE and LOCAL_RANK set. Every rank builds the
same model and draws the same random batch offsets; rank r trains on its own share of
each step's micro-batches, and DDP averages the gradients. Only rank 0 writes files and
reports. With one process every function here is a cheap no-op, so the loop has a
single code path.
"""

from __future__ import annotations

import datetime
import os
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist

from minigpt.errors import ConfigError

# A rank that waits longer than this for the others gives up with an error, so a
# stuck peer never hangs the whole job for torch's default of 30 minutes.
COLLECTIVE_TIMEOUT = datetime.timedelta(minutes=5)
GLOO_DRAIN_S = 0.2  # see shutdown()


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def from_env() -> DistContext:
    """The context torchrun describes in the environment (one process if none)."""
    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        rank = int(os.environ.get("RANK", "0"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
    except ValueError as e:
        raise ConfigError(f"RANK, WORLD_SIZE and LOCAL_RANK must be integers: {e}") from e
    if world < 1 or not 0 <= rank < world:
        raise ConfigError(f"bad torchrun environment: RANK={rank}, WORLD_SIZE={world}")
    return DistContext(rank=rank, world_size=world, local_rank=local)


def init(ctx: DistContext) -> None:
    """Join the process group: nccl when every rank has a GPU, else gloo."""
    if not ctx.enabled or dist.is_initialized():
        return
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(ctx.local_rank)
    dist.init_process_group(backend=backend, timeout=COLLECTIVE_TIMEOUT)


def shutdown(ctx: DistContext) -> None:
    """Leave the process group; call it once, after the last collective."""
    if ctx.enabled and dist.is_initialized():
        gloo = dist.get_backend() == "gloo"
        dist.destroy_process_group()
        if not gloo:
            return
        # Gloo's worker threads let go of a collective's tensors a moment after its
        # caller has the result, and need the GIL for that. One still doing so when the
        # interpreter begins to exit aborts the process ("terminate called without an
        # active exception", about one run in ten), and DDP keeps those threads alive
        # past destroy_process_group. A pause without the GIL lets them finish first.
        time.sleep(GLOO_DRAIN_S)


def _collective_device() -> torch.device:
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_reduce_sum(values: list[float], ctx: DistContext) -> list[float]:
    """Element-wise sums of `values` over all ranks (the values themselves alone)."""
    if not ctx.enabled:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=_collective_device())
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.tolist()


def all_gather(tensor: torch.Tensor, ctx: DistContext) -> list[torch.Tensor]:
    """Every rank's copy of a same-shaped tensor, in rank order, on the CPU."""
    if not ctx.enabled:
        return [tensor]
    t = tensor.to(_collective_device())
    out = [torch.empty_like(t) for _ in range(ctx.world_size)]
    dist.all_gather(out, t)
    return [o.cpu() for o in out]


def broadcast_text(text: str, ctx: DistContext, max_bytes: int = 4096) -> str:
    """Rank 0's `text` on every rank (e.g. a run name chosen from the clock)."""
    if not ctx.enabled:
        return text
    data = text.encode("utf-8")[:max_bytes]
    buf = torch.zeros(max_bytes + 1, dtype=torch.uint8)
    if data:
        buf[: len(data)] = torch.frombuffer(bytearray(data), dtype=torch.uint8)
    buf = buf.to(_collective_device())
    dist.broadcast(buf, src=0)
    raw = bytes(buf.cpu().tolist())
    return raw[: raw.index(0)].decode("utf-8")


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()
