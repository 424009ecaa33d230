"""TensorBoard event files with the scalars of metrics.jsonl (`minigpt train --tensorboard`).

Each row of metrics.jsonl becomes scalars under the row's key: `train/<key>` for a
logged step (loss, lr, grad_norm, tokens_per_s, mfu, elapsed), `eval/<key>` for an
evaluation (val_loss, val_bpb) and `final/<key>` for the whole-split one at the end,
at the row's step and with its "time" as the event's wall time. Events (start,
resume, stop), flags and null values (a skipped step's loss) are not scalars.

The writer is torch's own `torch.utils.tensorboard.SummaryWriter`; it needs the
`tensorboard` package, an optional extra (`pip install "minigpt[tensorboard]"`),
imported only when a run asks for it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from minigpt.errors import MissingDependencyError
from minigpt.schema import is_number

if TYPE_CHECKING:
    from torch.utils.tensorboard import SummaryWriter

MISSING = (
    "--tensorboard needs the tensorboard package; install it with "
    'pip install "minigpt[tensorboard]"'
)


def check_tensorboard() -> None:
    """Raise one clear line when the tensorboard package is missing (before training)."""
    _summary_writer()


def _summary_writer() -> type[SummaryWriter]:
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError as e:  # torch raises it when the tensorboard package is missing
        raise MissingDependencyError(MISSING) from e
    return SummaryWriter


def row_scalars(row: dict[str, Any]) -> list[tuple[str, float]]:
    """A metrics.jsonl row's numbers as (tag, value); none for an event row."""
    if "event" in row:
        return []
    group = "train" if "loss" in row else "final" if row.get("final") else "eval"
    return [
        (f"{group}/{key}", float(value))
        for key, value in row.items()
        if key not in ("step", "time") and is_number(value)
    ]


class TensorBoardLog:
    """A run's TensorBoard event files in `log_dir`, fed the rows of metrics.jsonl.

    `purge_step`: a resumed run's step + 1; TensorBoard drops the events logged at or
    after it by the earlier session, as the resume drops those rows of metrics.jsonl.
    """

    def __init__(self, log_dir: Path, purge_step: int | None = None) -> None:
        self._writer = _summary_writer()(str(log_dir), purge_step=purge_step)

    def write(self, row: dict[str, Any]) -> None:
        walltime = row.get("time")
        for tag, value in row_scalars(row):
            self._writer.add_scalar(tag, value, row["step"], walltime=walltime)
        self._writer.flush()  # a live TensorBoard shows each row as it is written

    def close(self) -> None:
        self._writer.close()
