"""A conversation's transcript: its turns, which are still in the model's view, the
undo / regenerate / reset bookkeeping, and saving and loading it as JSON.

Each turn keeps the text shown and the token ids the model sees. An optional pinned
prefix always comes first. Turns before `start` have slid out of the model's context
window (the chat session decides when), and the first turn in view may show the model
only its end (`cut`: a turn longer than the window); they stay whole in the
transcript, so a saved transcript holds the whole conversation, text and ids.

A saved transcript also records the sampling settings it was made with (`read_saved_chat`
returns them unchecked: the chat session checks them as settings).

A saved transcript records the tokenizer it was made with (`Tokenizer.spec`): token ids
mean other text to another tokenizer, so loading it into a chat with a model whose
tokenizer differs is refused. Loading checks a file before it replaces anything:
roles, text, ids within the model's vocabulary, and that each turn's ids spell the text
it shows (so the model sees what the transcript shows). A transcript saved before the
tokenizer was recorded (version 1) loads when that last check holds for every turn.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from minigpt.errors import ConfigError, TokenizerError
from minigpt.fileio import PathLike, load_json_object, write_atomic
from minigpt.tokenizer.encodings import Tokenizer

TRANSCRIPT_FORMAT = "minigpt-chat"
TRANSCRIPT_VERSION = 2  # 2 records the tokenizer; 1 did not
MAX_TRANSCRIPT_BYTES = 50 * 1024 * 1024


@dataclass
class Turn:
    role: str  # "user" or "model"
    text: str  # as the user typed it / as it was printed
    ids: list[int]  # as the model sees it


class Transcript:
    """The turns of a conversation, after a pinned prefix that always stays first."""

    def __init__(self, pinned: str = "", pinned_ids: Sequence[int] = ()) -> None:
        self.pinned = pinned
        self.pinned_ids = list(pinned_ids)
        self.turns: list[Turn] = []
        self.start = 0  # turns before this index have slid out of the context
        self.cut = 0  # ids of turn `start` the model no longer sees (its beginning)

    def context_ids(self) -> list[int]:
        """What the model sees next: the pinned prefix and the turns still in view."""
        ids = list(self.pinned_ids)
        for i, turn in enumerate(self.turns[self.start :]):
            ids += turn.ids[self.cut :] if i == 0 else turn.ids
        return ids

    def fit(self, budget: int) -> bool:
        """Slide the oldest turns out of view until the context holds at most `budget`
        ids (the last turn stays; alone too long, the model sees its end); True when
        anything slid out."""
        self.view_from(min(self.start, max(len(self.turns) - 1, 0)))
        before = (self.start, self.cut)
        length = len(self.context_ids())
        while length > budget and self.start < len(self.turns) - 1:
            length -= len(self.turns[self.start].ids) - self.cut
            self.view_from(self.start + 1)
        if self.turns and length > budget:
            self.cut += length - budget
        return (self.start, self.cut) != before

    def keep_shown(self, shown: str) -> None:
        """After an interrupted reply: only `shown` of it reached the screen (a chunk can
        be lost on its way there), so the last reply keeps that text. Anything but a
        beginning of the last reply's text is ignored."""
        if self.turns and self.turns[-1].role == "model" and self.turns[-1].text.startswith(shown):
            self.turns[-1].text = shown

    def view_from(self, start: int) -> None:
        """Let the model's view begin at turn `start`; a new first turn is seen whole."""
        if start != self.start:
            self.start, self.cut = start, 0

    def drop_reply(self) -> None:
        """Make ready to regenerate: drop the last reply, keep the user turn it answered."""
        last_user = 2 if self.turns and self.turns[-1].role == "model" else 1
        if len(self.turns) < last_user or self.turns[-last_user].role != "user":
            raise ConfigError("nothing to regenerate: the last turn is not a reply to you")
        if last_user == 2:
            self.turns.pop()
        self._forget_cut_of_gone_turns()

    def undo(self) -> int:
        """Remove the last exchange (the reply and the user turn before it); how many turns."""
        removed = 0
        if self.turns and self.turns[-1].role == "model":
            self.turns.pop()
            removed += 1
        if self.turns and self.turns[-1].role == "user":
            self.turns.pop()
            removed += 1
        self._forget_cut_of_gone_turns()
        return removed

    def reset(self) -> None:
        """Forget the conversation (the pinned prefix stays)."""
        self.turns.clear()
        self.start = self.cut = 0

    def _forget_cut_of_gone_turns(self) -> None:
        if self.start >= len(self.turns):
            self.cut = 0  # the turn it cut is gone; a turn added there is seen whole

    def save(self, path: PathLike, settings: dict[str, Any], tokenizer: Tokenizer) -> None:
        """As JSON: text and ids of every turn, the pinned prefix, the sampling settings,
        and the spec of the tokenizer the ids belong to."""
        data = {
            "format": TRANSCRIPT_FORMAT,
            "version": TRANSCRIPT_VERSION,
            "tokenizer": tokenizer.spec(),
            "pinned": self.pinned,
            "settings": settings,
            "turns": [asdict(t) for t in self.turns],
        }
        write_atomic(Path(path), (json.dumps(data, ensure_ascii=False, indent=1) + "\n").encode())

    def load(self, path: PathLike, tokenizer: Tokenizer) -> None:
        """Replace the turns with those saved by `save` (the pinned prefix stays)."""
        self.restore(read_transcript(path, tokenizer))

    def restore(self, turns: list[Turn]) -> None:
        """Replace the turns with `turns` (checked by `read_saved_chat`), all in view."""
        self.turns, self.start, self.cut = turns, 0, 0


def read_transcript(path: PathLike, tokenizer: Tokenizer) -> list[Turn]:
    """The turns of a saved transcript, checked for this tokenizer: format and version,
    the tokenizer recorded, roles, text, ids within the vocabulary that spell the text."""
    return read_saved_chat(path, tokenizer)[0]


def read_saved_chat(path: PathLike, tokenizer: Tokenizer) -> tuple[list[Turn], object]:
    """The checked turns of a saved transcript (see `read_transcript`) and the sampling
    settings it recorded, as they are in the file (None when it has none)."""
    path = Path(path)
    data = load_json_object(path, MAX_TRANSCRIPT_BYTES, ConfigError, "not a chat transcript")
    if data.get("format") != TRANSCRIPT_FORMAT:
        raise ConfigError(f"{path} is not a minigpt chat transcript (saved with /save)")
    version = data.get("version", 1)
    if type(version) is not int or version not in (1, TRANSCRIPT_VERSION):
        raise ConfigError(
            f"{path} is a version {version!r} transcript; this minigpt reads versions 1 "
            f"and {TRANSCRIPT_VERSION}: load it with the minigpt that saved it"
        )
    if version != 1 or "tokenizer" in data:
        _check_tokenizer(path, data.get("tokenizer"), tokenizer)
    raw = data.get("turns")
    if not isinstance(raw, list):
        raise ConfigError(f"{path}: 'turns' must be a list")
    turns = [_turn(path, i, t, tokenizer.vocab_size) for i, t in enumerate(raw)]
    for i, turn in enumerate(turns):
        _check_spelling(path, i, turn, tokenizer)
    return turns, data.get("settings")


def _turn(path: Path, i: int, t: object, vocab_size: int) -> Turn:
    if not isinstance(t, dict) or not (
        t.get("role") in ("user", "model")
        and isinstance(t.get("text"), str)
        and isinstance(t.get("ids"), list)
        and len(t["ids"]) > 0
        and all(type(x) is int and 0 <= x < vocab_size for x in t["ids"])
    ):
        raise ConfigError(
            f"{path}: turn {i + 1} is malformed (role user/model, text, ids within "
            f"the model's {vocab_size}-token vocabulary)"
        )
    return Turn(t["role"], t["text"], list(t["ids"]))


def _check_tokenizer(path: Path, recorded: object, tokenizer: Tokenizer) -> None:
    """Refuse ids made by another tokenizer (another spec): they would be other text to
    this model."""
    ours = tokenizer.spec()
    if not isinstance(recorded, dict) or "kind" not in recorded or "vocab_size" not in recorded:
        raise ConfigError(
            f"{path}: 'tokenizer' must be the spec of the tokenizer it was saved with"
        )
    if recorded != ours:
        raise ConfigError(
            f"{path} was saved with another tokenizer ({_describe(recorded)}) than this "
            f"model's ({_describe(ours)}): its token ids would be other text to this model; "
            "load it in a chat with the model that saved it"
        )


def _describe(spec: dict[str, Any]) -> str:
    """A tokenizer spec in a few words: kind, name, size, the start of its hash."""
    size = spec.get("vocab_size")
    words = [f"{spec.get('kind')!s:.20}"]
    if "name" in spec:
        words[0] += f" {spec['name']!s:.20}"
    words.append(f"{size:,} tokens" if type(size) is int else f"vocab_size {size!r:.20}")
    if "sha256" in spec:
        words.append(f"sha256 {spec['sha256']!s:.12}")
    return ", ".join(words)


def _check_spelling(path: Path, i: int, turn: Turn, tokenizer: Tokenizer) -> None:
    """A turn's ids must spell the text it shows (with the turn's separator or role
    tokens around it): else the model would see other text than the transcript shows."""
    try:
        spelled = tokenizer.decode(turn.ids)
    except TokenizerError:
        spelled = None
    if spelled is None or turn.text not in spelled:
        raise ConfigError(
            f"{path}: the token ids of turn {i + 1} do not spell its text for this model's "
            "tokenizer, so the model would see other text than the transcript shows; "
            "load it in a chat with the model that saved it"
        )
