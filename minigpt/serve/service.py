"""What a server serves: one checkpoint's model and tokenizer, ready to generate, and
the `Engine` that decodes for it."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from minigpt.checkpoint import Checkpoint
from minigpt.generation.batch import BatchDecoder
from minigpt.serve.engine import Engine
from minigpt.serve.protocol import ApiError
from minigpt.tokenizer.encodings import Tokenizer


@dataclass
class Served:
    """The model `name` (its run's name), with its decoding engine."""

    name: str
    checkpoint: Checkpoint
    engine: Engine
    how: str = ""  # how it computes, for the start-up line
    created: int = field(default_factory=lambda: int(time.time()))

    @classmethod
    def start(
        cls, name: str, checkpoint: Checkpoint, max_rows: int, max_waiting: int, how: str = ""
    ) -> Served:
        decoder = BatchDecoder(checkpoint.model, checkpoint.tokenizer, max_rows)
        return cls(name, checkpoint, Engine(decoder, max_waiting), how)

    @property
    def tokenizer(self) -> Tokenizer:
        return self.checkpoint.tokenizer

    @property
    def block_size(self) -> int:
        return self.checkpoint.model.config.block_size

    def card(self) -> dict[str, Any]:
        """The model as /v1/models lists it."""
        return {"id": self.name, "object": "model", "created": self.created, "owned_by": "minigpt"}

    def check_model(self, name: object) -> None:
        """A request names this model, or is answered 404."""
        if name != self.name:
            raise ApiError(
                404, f"the model {str(name)!r:.80} does not exist here; this server has "
                f"{self.name!r} (GET /v1/models)", "not_found_error", param="model",
                code="model_not_found",
            )  # fmt: skip
