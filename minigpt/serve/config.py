"""`ServeConfig`: the server's limits, each a `minigpt serve` option declared once
(`setting`) and checked when built. Importable without the `serve` extra."""

from __future__ import annotations

from dataclasses import dataclass

from minigpt.schema import check_field_types, require, require_in, setting


@dataclass(frozen=True)
class ServeConfig:
    """What the server takes on: sequences at once, requests waiting, and the size and
    time of one request."""

    max_batch: int = setting(
        16, "Sequences decoded together (a request with n > 1 takes n).", "--max-batch"
    )
    max_queue: int = setting(64, "Requests that may wait for room; more get 429.", "--max-queue")
    max_tokens: int = setting(1024, "New tokens a request may ask for.", "--max-tokens")
    max_prompt_tokens: int = setting(
        8192, "Prompt tokens a request may send (the model sees its last block_size).",
        "--max-prompt-tokens",
    )  # fmt: skip
    max_body: int = setting(1 << 20, "Request body bytes; more get 413.", "--max-body")
    timeout: float = setting(300.0, "Seconds a request may take, waiting included.", "--timeout")

    def __post_init__(self) -> None:
        check_field_types(self)
        require_in("max_batch", self.max_batch, 1, 1024)
        require_in("max_queue", self.max_queue, 0, 1 << 20)
        require_in("max_tokens", self.max_tokens, 1, 1 << 30)
        require_in("max_prompt_tokens", self.max_prompt_tokens, 1, 1 << 24)
        require_in("max_body", self.max_body, 1024, 1 << 30)
        require(0 < self.timeout <= 86400, "timeout must be more than 0 and at most 86,400 s")
