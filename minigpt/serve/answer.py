"""OpenAI's response objects for a `Request`: the whole answer, the stream's chunks
(role, content deltas, finish, usage) and the log-probability objects of both APIs."""

from __future__ import annotations

from typing import Any

from minigpt.generation.generate import Chunk, Completion, Finish
from minigpt.serve.protocol import Request
from minigpt.tokenizer.encodings import Tokenizer

FINISH = {"stop": "stop", "stop token": "stop", "no valid token": "stop", "limit": "length"}


class Answer:
    """Builds the response objects of one request from its chunks."""

    def __init__(self, request: Request, model: str, tokenizer: Tokenizer) -> None:
        self.request, self.model, self.tokenizer = request, model, tokenizer
        self.chat = request.kind == "chat"
        self.object = "chat.completion" if self.chat else "text_completion"
        self.offsets = [0] * request.config.num_samples  # characters written per choice

    def head(self) -> dict[str, Any]:
        r = self.request
        return {"id": r.id, "object": self.object, "created": r.created, "model": self.model}

    def usage(self, completions: list[Completion]) -> dict[str, int]:
        prompt = len(self.request.ids)
        new = sum(len(c.ids) for c in completions)
        return {"prompt_tokens": prompt, "completion_tokens": new, "total_tokens": prompt + new}

    def whole(self, completions: list[Completion]) -> dict[str, Any]:
        """The non-streamed response."""
        choices = []
        for index, c in enumerate(completions):
            choice: dict[str, Any] = {"index": index}
            if self.chat:
                choice["message"] = {"role": "assistant", "content": c.text}
            else:
                choice["text"] = c.text
            choice["logprobs"] = self._logprobs(c.ids, c.logprobs, c.top, 0)
            choice["finish_reason"] = finish_reason(c.finish)
            choices.append(choice)
        return self.head() | {"choices": choices, "usage": self.usage(completions)}

    def opening(self) -> list[dict[str, Any]]:
        """The first stream chunk of a chat: each choice's role."""
        if not self.chat:
            return []
        delta = {"role": "assistant", "content": ""}
        choices = [
            {"index": i, "delta": delta, "logprobs": None, "finish_reason": None}
            for i in range(self.request.config.num_samples)
        ]
        return [self._chunk(choices)]

    def chunk(self, chunk: Chunk) -> dict[str, Any] | None:
        """The stream chunk of one generation chunk (None when it adds nothing)."""
        asked = self.request.logprobs is not None and chunk.token is not None
        if chunk.finish is None and not chunk.text and not asked:
            return None
        choice: dict[str, Any] = {"index": chunk.index}
        if self.chat:
            choice["delta"] = {"content": chunk.text} if chunk.text or chunk.finish is None else {}
        else:
            choice["text"] = chunk.text
        choice["logprobs"] = None
        if asked:
            assert chunk.token is not None
            choice["logprobs"] = self._logprobs(
                [chunk.token], [chunk.logprob], [chunk.top], self.offsets[chunk.index]
            )
        self.offsets[chunk.index] += len(chunk.text)
        choice["finish_reason"] = None if chunk.finish is None else finish_reason(chunk.finish)
        return self._chunk([choice])

    def usage_chunk(self, completions: list[Completion]) -> dict[str, Any]:
        return self._chunk([]) | {"usage": self.usage(completions)}

    def _chunk(self, choices: list[dict[str, Any]]) -> dict[str, Any]:
        kind = "chat.completion.chunk" if self.chat else "text_completion"
        return self.head() | {"object": kind, "choices": choices}

    def _logprobs(
        self,
        ids: list[int],
        logprobs: list[float],
        tops: list[list[tuple[int, float]]],
        offset: int,
    ) -> dict[str, Any] | None:
        """OpenAI's log-probability object for these tokens, when asked for."""
        if self.request.logprobs is None:
            return None
        pieces = [self.tokenizer.token_bytes(i) for i in ids]
        tops = tops or [[] for _ in ids]
        if self.chat:
            return {
                "content": [
                    self._entry(piece, lp)
                    | {
                        "top_logprobs": [
                            self._entry(self.tokenizer.token_bytes(i), a) for i, a in top
                        ]
                    }
                    for piece, lp, top in zip(pieces, logprobs, tops, strict=True)
                ]
            }
        texts = [piece.decode("utf-8", "replace") for piece in pieces]
        offsets = []
        for text in texts:
            offsets.append(offset)
            offset += len(text)
        return {
            "tokens": texts,
            "token_logprobs": logprobs,
            "top_logprobs": [
                {self.tokenizer.token_bytes(i).decode("utf-8", "replace"): a for i, a in top}
                for top in tops
            ],
            "text_offset": offsets,
        }

    @staticmethod
    def _entry(piece: bytes, logprob: float) -> dict[str, Any]:
        return {"token": piece.decode("utf-8", "replace"), "logprob": logprob, "bytes": list(piece)}


def finish_reason(finish: Finish | None) -> str:
    return FINISH.get(finish or "limit", "stop")
