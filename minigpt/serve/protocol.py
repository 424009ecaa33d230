"""The OpenAI API as minigpt reads it: request bodies checked and turned into a
`Request` (prompt ids, `SampleConfig`), or an `ApiError` in OpenAI's error shape
(the responses are `minigpt.serve.answer`'s). No HTTP here: `minigpt.serve.app`
carries these.

Both endpoints take what the official `openai` package sends: `max_tokens` (chat also
`max_completion_tokens`), `temperature` (default 1, as OpenAI's), `top_p`, `n`,
`stop` (a string or up to 4), `seed`, `presence_penalty`, `frequency_penalty`,
`stream` with `stream_options.include_usage`, log-probabilities (`logprobs` as an
int for completions; `logprobs` and `top_logprobs` for chat), and minigpt's own
`top_k`, `min_p`, `repetition_penalty` and `ignore_eos` (as llama.cpp's server has
it). Settings minigpt does not have (`logit_bias`, `suffix`, `echo`, `best_of`,
tools, ...) are refused by name, never ignored; `user` and `metadata` are accepted
and unused. A chat's messages become the
prompt as `minigpt chat` builds it (`ChatFormat`: role tokens when the tokenizer has
them, plain text turns otherwise; system text first), so the model sees the same ids.
"""

from __future__ import annotations

import math
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from minigpt.config import SampleConfig
from minigpt.errors import ConfigError, TokenizerError
from minigpt.generation.batch import Job
from minigpt.generation.chat import ChatFormat, chat_stop, conversation_ids
from minigpt.generation.generate import prompt_ids
from minigpt.serve.config import ServeConfig
from minigpt.tokenizer.encodings import Tokenizer

MAX_STOP = 4  # stop strings per request, as OpenAI allows
MAX_TOP_LOGPROBS = 20  # chat's top_logprobs; completions' logprobs takes up to 5
IGNORED = {"model", "user", "metadata", "store", "service_tier", "parallel_tool_calls"}
REFUSED = {
    "logit_bias": "per-token logit biases",
    "suffix": "suffixes (insertion)",
    "echo": "echoing the prompt",
    "best_of": "best_of",
    "tools": "tools",
    "tool_choice": "tools",
    "functions": "functions",
    "function_call": "functions",
    "response_format": "response formats",
    "audio": "audio",
    "modalities": "other modalities",
    "prediction": "predicted outputs",
    "reasoning_effort": "reasoning",
}


class ApiError(Exception):
    """An error as OpenAI reports it: an HTTP status and {"error": {...}}."""

    def __init__(
        self, status: int, message: str, kind: str = "invalid_request_error",
        param: str | None = None, code: str | None = None,
    ) -> None:  # fmt: skip
        super().__init__(message)
        self.status, self.message, self.kind, self.param, self.code = (
            status, message, kind, param, code,
        )  # fmt: skip

    def body(self) -> dict[str, Any]:
        error = {"message": self.message, "type": self.kind, "param": self.param}
        return {"error": error | {"code": self.code}}


@dataclass
class Request:
    """A checked request: what to generate and how to answer."""

    kind: str  # "chat" or "completion"
    ids: list[int]
    config: SampleConfig
    stream: bool = False
    include_usage: bool = False
    logprobs: int | None = None  # alternatives per token when log-probabilities are asked for
    stop_ids: list[int] = field(default_factory=list)
    created: int = field(default_factory=lambda: int(time.time()))
    id: str = ""

    def __post_init__(self) -> None:
        prefix = "chatcmpl" if self.kind == "chat" else "cmpl"
        self.id = self.id or f"{prefix}-{secrets.token_hex(12)}"

    def job(self) -> Job:
        return Job(self.ids, self.config, self.logprobs or 0, self.stop_ids)


# -- reading a request ------------------------------------------------------------


def parse_request(
    kind: str, body: object, tokenizer: Tokenizer, block_size: int, limits: ServeConfig
) -> Request:
    """A chat or completion request body, checked; ApiError(400) names what is wrong."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    for name, value in body.items():
        if name in REFUSED and asks_for(name, value):
            raise ApiError(400, f"minigpt does not support {REFUSED[name]} ('{name}')", param=name)
    read = Reader(body)
    if kind == "chat":
        stop = chat_stop(tokenizer, read.stop())
        try:
            chat = ChatFormat.of(tokenizer, stop)
        except ConfigError as e:
            raise ApiError(400, str(e), param="stop") from e
        max_tokens = read.count("max_completion_tokens", None, limits.max_tokens)
        if max_tokens is None:
            max_tokens = read.count("max_tokens", limits.max_tokens, limits.max_tokens)
        room = min(max_tokens, block_size // 4)
        system, turns = read.messages()
        try:
            ids = conversation_ids(chat, system, turns, block_size - max(room, 1))
        except (ConfigError, TokenizerError) as e:
            raise ApiError(400, f"the messages cannot be encoded: {e}", param="messages") from e
        stop_ids = chat.stop_ids()
        logprobs = read.top_logprobs() if read.flag("logprobs") else None
    else:
        stop = read.stop()
        max_tokens = read.count("max_tokens", 16, limits.max_tokens)  # OpenAI's default
        ids = read.prompt(tokenizer)
        stop_ids = []
        logprobs = read.count("logprobs", None, 5)
    if not ids:
        raise ApiError(400, "the prompt is empty", param="prompt")
    if len(ids) > limits.max_prompt_tokens:
        raise ApiError(
            400, f"the prompt is {len(ids)} tokens; this server takes at most "
            f"{limits.max_prompt_tokens}", param="messages" if kind == "chat" else "prompt",
            code="context_length_exceeded",
        )  # fmt: skip
    config = read.sampling(max_tokens, stop, limits)
    options = read.object("stream_options")
    request = Request(
        kind, ids, config, stream=read.flag("stream"), logprobs=logprobs, stop_ids=stop_ids,
        include_usage=bool(options.get("include_usage", False)),
    )  # fmt: skip
    read.check_all_read()
    return request


def asks_for(name: str, value: object) -> bool:
    """Whether a setting minigpt lacks is given a value that would change anything."""
    if name == "best_of":
        return value not in (None, 1)
    return value not in (None, False, "", {}, [])


class Reader:
    """Reads the fields of a request body, each checked, and remembers which it read."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        self.read: set[str] = set(IGNORED) | set(REFUSED)

    def get(self, name: str) -> Any:
        self.read.add(name)
        return self.body.get(name)

    def check_all_read(self) -> None:
        unknown = sorted(set(self.body) - self.read)
        if unknown:
            raise ApiError(400, f"unknown field '{unknown[0]}'", param=unknown[0])

    def flag(self, name: str) -> bool:
        value = self.get(name)
        if value is None:
            return False
        if not isinstance(value, bool):
            raise ApiError(400, f"'{name}' must be true or false", param=name)
        return value

    def object(self, name: str) -> dict[str, Any]:
        value = self.get(name)
        if value is None:
            return {}
        if not isinstance(value, dict):
            raise ApiError(400, f"'{name}' must be an object", param=name)
        return value

    def count(self, name: str, default: int | None, most: int, least: int = 0) -> int | None:
        value = self.get(name)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise ApiError(400, f"'{name}' must be an integer", param=name)
        if not least <= value <= most:
            raise ApiError(
                400, f"'{name}' must be from {least} to {most:,}, not {value:,}", param=name
            )
        return value

    def number(self, name: str, default: float | None, low: float, high: float) -> float | None:
        value = self.get(name)
        if value is None:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, (int, float))
            or not math.isfinite(value)
        ):
            raise ApiError(400, f"'{name}' must be a number", param=name)
        if not low <= value <= high:
            raise ApiError(
                400, f"'{name}' must be from {low:g} to {high:g}, not {value:g}", param=name
            )
        return float(value)

    def stop(self) -> tuple[str, ...]:
        value = self.get("stop")
        if value is None:
            return ()
        stops = [value] if isinstance(value, str) else value
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops):
            raise ApiError(400, "'stop' must be a non-empty string or a list of them", param="stop")
        if len(stops) > MAX_STOP:
            raise ApiError(400, f"'stop' takes at most {MAX_STOP} strings", param="stop")
        return tuple(stops)

    def top_logprobs(self) -> int:
        return self.count("top_logprobs", 0, MAX_TOP_LOGPROBS) or 0

    def prompt(self, tokenizer: Tokenizer) -> list[int]:
        """A completion's prompt: a string, a list of one string, or token ids."""
        value = self.get("prompt")
        if isinstance(value, list) and len(value) == 1 and isinstance(value[0], (str, list)):
            value = value[0]  # the openai package sends a list of one prompt
        if isinstance(value, str):
            try:
                return prompt_ids(tokenizer, value)
            except TokenizerError as e:
                raise ApiError(400, f"the prompt cannot be encoded: {e}", param="prompt") from e
        if isinstance(value, list) and value and all(type(i) is int for i in value):
            if not all(0 <= i < tokenizer.vocab_size for i in value):
                raise ApiError(
                    400, f"prompt token ids must be from 0 to {tokenizer.vocab_size - 1}",
                    param="prompt",
                )  # fmt: skip
            return list(value)
        raise ApiError(
            400, "'prompt' must be a string, a list of one string, or a list of token ids "
            "(one prompt per request)", param="prompt",
        )  # fmt: skip

    def messages(self) -> tuple[str, list[tuple[str, str]]]:
        """The system text and the (user | model, text) turns of a chat."""
        messages = self.get("messages")
        if not isinstance(messages, list) or not messages:
            raise ApiError(400, "'messages' must be a non-empty list", param="messages")
        system: list[str] = []
        turns: list[tuple[str, str]] = []
        for i, message in enumerate(messages):
            where = f"messages[{i}]"
            if not isinstance(message, dict):
                raise ApiError(400, f"{where} must be an object", param=where)
            role, text = message.get("role"), content_text(message.get("content"), where)
            if role in ("system", "developer"):
                system.append(text)
            elif role in ("user", "assistant"):
                turns.append(("user" if role == "user" else "model", text))
            else:
                raise ApiError(
                    400, f"{where}.role must be system, user or assistant, not {role!r:.40}",
                    param=f"{where}.role",
                )  # fmt: skip
        if not turns:
            raise ApiError(400, "'messages' needs a user message", param="messages")
        return "\n".join(system), turns

    def sampling(self, max_tokens: int, stop: tuple[str, ...], limits: ServeConfig) -> SampleConfig:
        """The SampleConfig of the sampling fields (checked again by SampleConfig)."""
        settings: dict[str, Any] = {
            "max_new_tokens": max_tokens,
            "stop": stop,
            "num_samples": self.count("n", 1, limits.max_batch, least=1),
            "temperature": self.number("temperature", 1.0, 0.0, 2.0),
            "seed": self.count("seed", secrets.randbelow(2**31), 2**63 - 1, least=-(2**63)),
            "presence_penalty": self.number("presence_penalty", 0.0, -2.0, 2.0),
            "frequency_penalty": self.number("frequency_penalty", 0.0, -2.0, 2.0),
            "repetition_penalty": self.number("repetition_penalty", 1.0, 1e-6, 100.0),
            "ignore_eos": self.flag("ignore_eos"),
        }
        top_p = self.number("top_p", None, 0.0, 1.0)
        if top_p is not None and top_p < 1.0:
            settings["top_p"] = top_p
        settings["top_k"] = self.count("top_k", None, 1 << 20, least=1)
        settings["min_p"] = self.number("min_p", None, 0.0, 1.0)
        settings["seed"] %= 2**63  # torch seeds are unsigned
        try:
            return SampleConfig(**settings)
        except ConfigError as e:
            raise ApiError(400, str(e)) from e


def content_text(content: object, where: str) -> str:
    """A message's text: a string, or a list of {"type": "text", "text": ...} parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list) and all(
        isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
        for p in content
    ):
        return "".join(p["text"] for p in content)
    raise ApiError(
        400, f"{where}.content must be a string or a list of text parts", param=f"{where}.content"
    )
