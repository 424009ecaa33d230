"""`ChatSession`: a conversation with a model, kept in its context. No terminal I/O.

The session owns the model's side of a conversation: the `ModelContext` (KV cache),
the window policy, and each reply drawn through the one generation path
(`continue_from` and `TextGeneration`). The turns themselves, and undo, reset, save
and load, are its `Transcript`'s. Two formats turn the turns into ids:

- plain text (any base model): the user's text is followed by the turn separator
  (the first stop string, by default a blank line: `chat_stop` decides), and the
  model continues until a stop string or the token limit. A Shakespeare model given
  a line answers with the next speech and stops at the blank line after it;
- role tokens, when the tokenizer has `<|user_start|>`, `<|user_end|>`,
  `<|assistant_start|>` and `<|assistant_end|>`: the user's text is wrapped in the
  user tokens, and the reply ends at `<|assistant_end|>`.

In both, `<|endoftext|>` ends a reply too (unless the settings' `ignore_eos`), and a
reply is always whole UTF-8 characters: each starts between characters and draws
only tokens that keep it valid (the session keeps the tokenizer's `Utf8Cache`).

A reply's ids are the ids the model generated (its stop string included), so the
context after a reply is exactly what the model produced, and the next turn prefills
only the new ids: the `ModelContext` keeps its KV cache and runs what differs from
what it holds (`ModelContext.sync`). `/undo`, `/regen` and `/reset` cut the
transcript, and the cache keeps its common prefix.

Loading a transcript restores the sampling settings it was saved with, checked as
any `SampleConfig` is (the file may come from anyone), except the stop strings: they
are this chat's (--stop, --no-stop), since they shape its turns. An interrupted reply
keeps exactly the text its caller was handed (`_reply`), or what the caller says it
showed (`keep_shown`).

When the transcript outgrows the context window, its oldest turns slide out of the
model's view (they stay in the transcript for /save), a single turn longer than the
window is seen by its end (`Transcript.cut`), an optional pinned prefix stays first,
and a notice is queued once (`take_notices`).
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from minigpt.config import SampleConfig
from minigpt.errors import ConfigError, TokenizerError
from minigpt.fileio import PathLike
from minigpt.generation.context import ModelContext
from minigpt.generation.generate import Chunk, Step, TextGeneration, continue_from
from minigpt.generation.transcript import Transcript, Turn, read_saved_chat
from minigpt.generation.utf8 import Utf8Cache
from minigpt.model import GPT
from minigpt.tokenizer.encodings import Tokenizer

ROLE_TOKENS = ("<|user_start|>", "<|user_end|>", "<|assistant_start|>", "<|assistant_end|>")
DEFAULT_STOP = ("\n\n",)  # a blank line ends a reply of a plain-text model


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


def chat_stop(
    tokenizer: Tokenizer, stop: Sequence[str] = (), no_stop: bool = False
) -> tuple[str, ...]:
    """A chat's stop strings: `stop` when given; none when asked for none (`no_stop`)
    or when the model has role tokens (`<|assistant_end|>` ends its replies); else
    DEFAULT_STOP, the blank line that ends a plain-text model's reply."""
    if stop or no_stop or role_ids(tokenizer):
        return tuple(stop)
    return DEFAULT_STOP


def restored_settings(path: PathLike, saved: object, current: SampleConfig) -> SampleConfig:
    """The sampling settings a transcript recorded, checked by `SampleConfig` itself;
    fields it lacks keep their `current` value, and the stop strings and the number of
    samples stay `current`'s (a chat's turns are shaped by its own stop strings)."""
    if not isinstance(saved, dict):
        raise ConfigError(f"{path}: 'settings' must be a JSON object of sampling settings")
    unknown = sorted(set(saved) - {f.name for f in fields(SampleConfig)})
    if unknown:
        raise ConfigError(f"{path}: unknown sampling settings {unknown[:3]!r:.80}")
    kept = {"stop": current.stop, "num_samples": current.num_samples}
    try:
        return SampleConfig(**(asdict(current) | saved | kept))
    except ConfigError as e:
        raise ConfigError(f"{path}: its saved settings are refused: {e!s:.200}") from e


def pinned_prefix_ids(tokenizer: Tokenizer, pinned: str, block_size: int) -> list[int]:
    """The ids of a prefix that always stays first in the context; it may take at most
    half the window (the context keeps at least that much for the conversation)."""
    ids = tokenizer.encode(pinned) if pinned else []
    if len(ids) > block_size // 2:
        raise ConfigError(
            f"the pinned prefix is {len(ids)} tokens; it may take at most "
            f"half the {block_size}-token context window: shorten it"
        )
    return ids


@dataclass(frozen=True)
class ChatFormat:
    """How a model's turns become ids: with its role tokens (`roles`: ROLE_TOKENS' ids)
    or, without them, as plain text where `separator` ends each turn."""

    tokenizer: Tokenizer
    roles: tuple[int, ...]
    separator: str

    @classmethod
    def of(cls, tokenizer: Tokenizer, stop: Sequence[str]) -> ChatFormat:
        """The format of `tokenizer`, whose chat stops at `stop` (`chat_stop`): the first
        stop string separates plain-text turns (a newline when there is none)."""
        chat = cls(tokenizer, tuple(role_ids(tokenizer)), stop[0] if stop else "\n")
        if not chat.roles:
            try:
                tokenizer.encode(chat.separator)
            except TokenizerError as e:
                raise ConfigError(
                    f"the turn separator {chat.separator!r} (the first --stop string) is not "
                    f"in the model's vocabulary; choose a --stop the model can write ({e})"
                ) from e
        return chat

    def user_ids(self, text: str) -> list[int]:
        """A user turn, and what opens the model's reply."""
        if self.roles:
            user_start, user_end, assistant_start, _ = self.roles
            return [user_start, *self.tokenizer.encode(text), user_end, assistant_start]
        return self.tokenizer.encode(text + self.separator)

    def turn_end(self) -> list[int]:
        """What closes a reply: <|assistant_end|>, or the separator."""
        return [self.roles[3]] if self.roles else self.tokenizer.encode(self.separator)

    def reply_ids(self, text: str) -> list[int]:
        """A reply of the model's, closed."""
        return self.tokenizer.encode(text) + self.turn_end()

    def stop_ids(self) -> list[int]:
        """Ids that end a reply: <|assistant_end|> when the model has role tokens."""
        return list(self.roles[3:])


def conversation_ids(
    chat: ChatFormat, system: str, turns: Sequence[tuple[str, str]], budget: int
) -> list[int]:
    """The ids a model sees for a conversation, ready for its reply: `system` text
    first (it stays: `pinned_prefix_ids`), then the ("user" | "model", text) turns, the
    oldest sliding out of view so that at most `budget` ids remain (`Transcript.fit`)."""
    block = 2 * budget  # the system text may take half the budget, like a pinned prefix
    transcript = Transcript(system, pinned_prefix_ids(chat.tokenizer, system, block))
    for role, text in turns:
        ids = chat.user_ids(text) if role == "user" else chat.reply_ids(text)
        transcript.turns.append(Turn(role, text, ids))
    transcript.fit(budget)
    return transcript.context_ids()


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
        self.config = config if config is not None else SampleConfig(stop=chat_stop(tokenizer))
        pinned_ids = pinned_prefix_ids(tokenizer, pinned, model.config.block_size)
        self.format = ChatFormat.of(tokenizer, self.config.stop)
        self.roles = self.format.roles
        self.transcript = Transcript(pinned, pinned_ids)
        self.last = ReplyStats()
        self.context = ModelContext(model, pinned=len(pinned_ids))
        self._generator = torch.Generator(device=model.device)
        self._generator.manual_seed(self.config.seed)
        self._utf8 = Utf8Cache(tokenizer)  # its tables are built for the first reply
        self._notices: list[str] = []
        self._told_slide = False

    def set(self, **changes: Any) -> None:
        """Change sampling settings (validated); a new seed restarts the random stream."""
        config = replace(self.config, **changes)
        if "stop" in changes:
            self.format = ChatFormat.of(self.tokenizer, config.stop)
        self.config = config
        if "seed" in changes:
            self._generator.manual_seed(self.config.seed)

    def respond(self, text: str) -> Iterator[Chunk]:
        """Add the user's text and stream the model's reply."""
        self.transcript.turns.append(Turn("user", text, self.format.user_ids(text)))
        return self._reply()

    def regenerate(self) -> Iterator[Chunk]:
        """Drop the last reply and draw a new one for the same user turn."""
        self.transcript.drop_reply()
        return self._reply()

    def save(self, path: PathLike) -> None:
        """The transcript as JSON, with the sampling settings and the tokenizer's spec."""
        self.transcript.save(path, asdict(self.config), self.tokenizer)

    def load(self, path: PathLike) -> SampleConfig | None:
        """Replace the transcript with one saved by `save` with this model's tokenizer,
        and the settings with those it recorded (`restored_settings`); the settings
        restored, None when it recorded none. A file that fails a check changes nothing."""
        turns, saved = read_saved_chat(path, self.tokenizer)
        config = None if saved is None else restored_settings(path, saved, self.config)
        self.transcript.restore(turns)
        if config is not None:
            self.config = config
            self._generator.manual_seed(config.seed)
        return config

    def keep_shown(self, shown: str) -> None:
        """After an interrupted reply the caller showed only `shown` of it: keep that."""
        self.transcript.keep_shown(shown)

    def take_notices(self) -> list[str]:
        notices, self._notices = self._notices, []
        return notices

    # -- replies -------------------------------------------------------------------

    def _reply(self) -> Iterator[Chunk]:
        """Generate a reply to the transcript; the turn is recorded even if interrupted."""
        config = self.config
        room = min(config.max_new_tokens, self.model.config.block_size // 4)
        if self.transcript.fit(self.model.config.block_size - room):
            self._tell_slide()
        stats = self.last = ReplyStats(ended="interrupted")
        slides = self.context.slides
        stop_ids = self.format.stop_ids()
        generation = TextGeneration(
            self._steps(stats), self.tokenizer, 1, config.stop, stop_ids,
            ignore_eos=config.ignore_eos,
        )  # fmt: skip
        reply = generation.completions[0]
        handed: list[str] = []  # the text the caller was given (and printed)
        try:
            for chunk in generation:
                if chunk.text:
                    handed.append(chunk.text)
                    yield chunk
        finally:
            stats.tokens = len(reply.ids)
            stats.first_token_s = generation.first_token_s
            stats.seconds = time.perf_counter() - generation.start
            stats.ended = reply.finish or "interrupted"
            # not reply.text: an interruption between decoding a chunk and handing it
            # over would record text the caller never showed
            self._record_reply("".join(handed), reply.ids, stats.ended)
            if self.context.slides > slides:
                self._tell_slide()

    def _steps(self, stats: ReplyStats) -> Iterator[Step]:
        """The reply's steps, once the context holds the transcript (only what it does
        not hold yet runs: `stats.prefilled` says how much)."""
        before = self.context.prefilled
        logits = self.context.sync(self.transcript.context_ids())
        stats.prefilled = self.context.prefilled - before
        vocab = self.tokenizer.vocab_size
        utf8 = self._utf8.tables(logits.size(-1), logits.device)
        yield from continue_from(
            self.context, logits, self.config, self._generator, vocab, utf8=utf8
        )

    def _record_reply(self, text: str, ids: list[int], ended: str) -> None:
        # closed by its own end: <|assistant_end|>, or the separator (a stop string);
        # a reply ended by <|endoftext|> or the limit gets the turn's end added
        if self.roles:
            closed = bool(ids) and ids[-1] == self.roles[3]
        else:
            closed = ended == "stop"
        if not closed:  # close the turn so the next one starts cleanly
            ids = ids + self.format.turn_end()
        self.transcript.turns.append(Turn("model", text, ids))

    def _tell_slide(self) -> None:
        if not self._told_slide:
            self._told_slide = True
            block = self.model.config.block_size
            kept = " (the pinned prefix stays)" if self.transcript.pinned_ids else ""
            self._notices.append(
                f"the conversation is longer than the model's {block}-token context: "
                f"the oldest part slides out of view{kept}"
            )
