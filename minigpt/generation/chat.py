"""`ChatSession`: a conversation with a model, kept in its context. No terminal I/O.

The transcript is a list of turns, each with the text shown and the token ids the
model sees. Two formats turn it into ids:

- plain text (any base model): the user's text is followed by the turn separator
  (the first stop string, by default a blank line), and the model continues until a
  stop string or the token limit. A Shakespeare model given a line answers with the
  next speech and stops at the blank line after it;
- role tokens, when the tokenizer has `<|user_start|>`, `<|user_end|>`,
  `<|assistant_start|>` and `<|assistant_end|>`: the user's text is wrapped in the
  user tokens, and the reply ends at `<|assistant_end|>`.

A reply's ids are the ids the model generated (its stop string included), so the
context after a reply is exactly what the model produced, and the next turn prefills
only the new ids: the `ModelContext` keeps its KV cache and runs what differs from what it
holds (`ModelContext.sync`). `/undo`, `/regen` and `/reset` cut the transcript, and the
cache keeps its common prefix.

When the transcript outgrows the context window, its oldest turns slide out of the
model's view (they stay in the transcript for /save), an optional pinned prefix stays
first, and a notice is queued once (`take_notices`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch

from minigpt.config import SampleConfig
from minigpt.errors import ConfigError, TokenizerError
from minigpt.fileio import load_json_object, write_atomic
from minigpt.generation.context import ModelContext
from minigpt.generation.generate import Chunk, Step, TextGeneration, continue_from
from minigpt.model import GPT
from minigpt.tokenizer.encodings import Tokenizer

ROLE_TOKENS = ("<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|assistant_end|>")
DEFAULT_STOP = ("\n\n",)  # a blank line ends a reply of a plain-text model
TRANSCRIPT_FORMAT = "minigpt-chat"
MAX_TRANSCRIPT_BYTES = 50 * 1024 * 1024


@dataclass
class Turn:
    role: str  # "user" or "model"
    text: str  # as the user typed it / as it was printed
    ids: list[int]  # as the model sees it


@dataclass
class ReplyStats:
    tokens: int = 0
    prefilled: int = 0  # context ids run through the model before the first reply token
    first_token_s: float = 0.0  # time to the first token
    seconds: float = 0.0
    ended: str = ""  # "stop" (string), "stop token", "limit" or "interrupted"

    @property
    def tokens_per_s(self) -> float:
        return self.tokens / self.seconds if self.seconds > 0 else 0.0


def role_ids(tokenizer: Tokenizer) -> list[int]:
    """The ids of ROLE_TOKENS, in order, or [] when the tokenizer lacks any of them."""
    ids = [tokenizer.special_id(name) for name in ROLE_TOKENS]
    return [i for i in ids if i is not None] if None not in ids else []


class ChatSession:
    """A conversation with `model`; `respond` streams a reply to new user text."""

    def __init__(
        self,
        model: GPT,
        tokenizer: Tokenizer,
        config: SampleConfig | None = None,
        pinned: str = "",
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.roles = role_ids(tokenizer)
        stop = () if self.roles else DEFAULT_STOP
        self.config = config if config is not None else SampleConfig(stop=stop)
        self.pinned = pinned  # text that always stays first in the context
        self._pinned_ids = tokenizer.encode(pinned) if pinned else []
        block = model.config.block_size
        if len(self._pinned_ids) > block // 2:
            raise ConfigError(
                f"the pinned prefix is {len(self._pinned_ids)} tokens; it may take at most "
                f"half the {block}-token context window: shorten it"
            )
        if not self.roles:
            self._check_separator()
        self.turns: list[Turn] = []
        self.start = 0  # turns before this index have slid out of the context
        self.last = ReplyStats()
        self.context = ModelContext(model, pinned=len(self._pinned_ids))
        self._generator = torch.Generator(device=model.device)
        self._generator.manual_seed(self.config.seed)
        self._notices: list[str] = []
        self._told_slide = False

    # -- settings ---------------------------------------------------------------

    def set(self, **changes: Any) -> None:
        """Change sampling settings (validated); a new seed restarts the random stream."""
        self.config = replace(self.config, **changes)
        if "seed" in changes:
            self._generator.manual_seed(self.config.seed)

    # -- turns ------------------------------------------------------------------

    def respond(self, text: str) -> Iterator[Chunk]:
        """Add the user's text and stream the model's reply."""
        self.turns.append(Turn("user", text, self._user_ids(text)))
        return self._reply()

    def regenerate(self) -> Iterator[Chunk]:
        """Drop the last reply and draw a new one for the same user turn."""
        last_user = 2 if self.turns and self.turns[-1].role == "model" else 1
        if len(self.turns) < last_user or self.turns[-last_user].role != "user":
            raise ConfigError("nothing to regenerate: the last turn is not a reply to you")
        if last_user == 2:
            self.turns.pop()
        return self._reply()

    def undo(self) -> int:
        """Remove the last exchange (the reply and the user turn before it); how many turns."""
        removed = 0
        if self.turns and self.turns[-1].role == "model":
            self.turns.pop()
            removed += 1
        if self.turns and self.turns[-1].role == "user":
            self.turns.pop()
            removed += 1
        return removed

    def reset(self) -> None:
        """Forget the conversation (the pinned prefix and the settings stay)."""
        self.turns.clear()
        self.start = 0

    def context_ids(self) -> list[int]:
        """What the model sees next: the pinned prefix and the turns still in view."""
        ids = list(self._pinned_ids)
        for turn in self.turns[self.start :]:
            ids += turn.ids
        return ids

    def take_notices(self) -> list[str]:
        notices, self._notices = self._notices, []
        return notices

    # -- generation -------------------------------------------------------------

    def _user_ids(self, text: str) -> list[int]:
        if self.roles:
            user_start, user_end, assistant_start, _ = self.roles
            return [user_start, *self.tokenizer.encode(text), user_end, assistant_start]
        return self.tokenizer.encode(text + self._separator())

    def _check_separator(self) -> None:
        try:
            self.tokenizer.encode(self._separator())
        except TokenizerError as e:
            raise ConfigError(
                f"the turn separator {self._separator()!r} (the first --stop string) is not in "
                f"the model's vocabulary; choose a --stop the model can write ({e})"
            ) from e

    def _separator(self) -> str:
        """What ends a turn in the plain format: the first stop string, else a newline."""
        return self.config.stop[0] if self.config.stop else "\n"

    def _reply(self) -> Iterator[Chunk]:
        """Generate a reply to the transcript; the turn is recorded even if interrupted."""
        config = self.config
        self._fit_context(room=min(config.max_new_tokens, self.model.config.block_size // 4))
        stats = self.last = ReplyStats(ended="interrupted")
        slides = self.context.slides
        stop_ids = self.roles[3:]  # <|assistant_end|>, when the model has role tokens
        generation = TextGeneration(self._steps(stats), self.tokenizer, 1, config.stop, stop_ids)
        reply = generation.completions[0]
        try:
            for chunk in generation:
                if chunk.text:
                    yield chunk
        finally:
            stats.tokens = len(reply.ids)
            stats.first_token_s = generation.first_token_s
            stats.seconds = time.perf_counter() - generation.start
            stats.ended = reply.finish or "interrupted"
            self._record_reply(reply.text, reply.ids, stats.ended)
            if self.context.slides > slides:
                self._tell_slide()

    def _steps(self, stats: ReplyStats) -> Iterator[Step]:
        """The reply's steps, after the context is made to hold the transcript (only
        what it does not hold yet runs: `stats.prefilled` says how much)."""
        before = self.context.prefilled
        logits = self.context.sync(self.context_ids())
        stats.prefilled = self.context.prefilled - before
        vocab = self.tokenizer.vocab_size
        yield from continue_from(self.context, logits, self.config, self._generator, vocab)

    def _record_reply(self, text: str, ids: list[int], ended: str) -> None:
        closed = ended == ("stop token" if self.roles else "stop")
        if not closed:  # close the turn so the next one starts cleanly
            ids = ids + self._turn_end()
        self.turns.append(Turn("model", text, ids))

    def _turn_end(self) -> list[int]:
        if self.roles:
            return [self.roles[3]]
        return self.tokenizer.encode(self._separator())  # checked in __init__

    def _fit_context(self, room: int) -> None:
        """Slide the oldest turns out until the context leaves `room` ids for the reply."""
        budget = self.model.config.block_size - room
        self.start = min(self.start, max(len(self.turns) - 1, 0))  # the last turn stays in view
        length = len(self._pinned_ids) + sum(len(t.ids) for t in self.turns[self.start :])
        while length > budget and self.start < len(self.turns) - 1:
            length -= len(self.turns[self.start].ids)
            self.start += 1
            self._tell_slide()
        last = self.turns[-1] if self.turns else None
        overflow = length - budget
        if last is not None and overflow > 0:  # one turn alone is too long: keep its end
            last.ids = last.ids[overflow:]
            self._tell_slide()

    def _tell_slide(self) -> None:
        if not self._told_slide:
            self._told_slide = True
            block = self.model.config.block_size
            kept = " (the pinned prefix stays)" if self._pinned_ids else ""
            self._notices.append(
                f"the conversation is longer than the model's {block}-token context: "
                f"the oldest part slides out of view{kept}"
            )

    # -- saving and loading ---------------------------------------------------

    def save(self, path: Path) -> None:
        """The transcript as JSON (text and ids of every turn, pinned prefix, settings)."""
        data = {
            "format": TRANSCRIPT_FORMAT,
            "version": 1,
            "pinned": self.pinned,
            "settings": asdict(self.config),
            "turns": [asdict(t) for t in self.turns],
        }
        write_atomic(path, (json.dumps(data, ensure_ascii=False, indent=1) + "\n").encode())

    def load(self, path: Path) -> None:
        """Replace the transcript with one saved by `save` (the settings stay as they are)."""
        turns = read_transcript(path, self.tokenizer.vocab_size)
        self.turns, self.start = turns, 0


def read_transcript(path: Path, vocab_size: int) -> list[Turn]:
    """The turns of a saved transcript, checked: roles, text, ids within the vocabulary."""
    data = load_json_object(path, MAX_TRANSCRIPT_BYTES, ConfigError, "not a chat transcript")
    if data.get("format") != TRANSCRIPT_FORMAT:
        raise ConfigError(f"{path} is not a minigpt chat transcript (saved with /save)")
    raw = data.get("turns")
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: 'turns' must be a list")
    turns = []
    for i, t in enumerate(raw):
        ok = (
            isinstance(t, dict)
            and t.get("role") in ("user", "model")
            and isinstance(t.get("text"), str)
            and isinstance(t.get("ids"), list)
            and len(t["ids"]) > 0
            and all(type(x) is int and 0 <= x < vocab_size for x in t["ids"])
        )
        if not ok:
            raise ConfigError(
                f"{path}: turn {i + 1} is malformed (role user/model, text, ids within "
                f"the model's {vocab_size}-token vocabulary)"
            )
        turns.append(Turn(t["role"], t["text"], list(t["ids"])))
    return turns
