"""A conversation's transcript: its turns, which are still in the model's view, the
undo / regenerate / reset bookkeeping, and saving and loading it as JSON.

Each turn keeps the text shown and the token ids the model sees. An optional pinned
prefix always comes first. Turns before `start` have slid out of the model's context
window (the chat session decides when); they stay in the transcript, so a saved
transcript holds the whole conversation. Loading checks a file before it replaces
anything: roles, text, and ids within the model's vocabulary.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from minigpt.errors import ConfigError
from minigpt.fileio import PathLike, load_json_object, write_atomic

TRANSCRIPT_FORMAT = "minigpt-chat"
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

    def context_ids(self) -> list[int]:
        """What the model sees next: the pinned prefix and the turns still in view."""
        ids = list(self.pinned_ids)
        for turn in self.turns[self.start :]:
            ids += turn.ids
        return ids

    def drop_reply(self) -> None:
        """Make ready to regenerate: drop the last reply, keep the user turn it answered."""
        last_user = 2 if self.turns and self.turns[-1].role == "model" else 1
        if len(self.turns) < last_user or self.turns[-last_user].role != "user":
            raise ConfigError("nothing to regenerate: the last turn is not a reply to you")
        if last_user == 2:
            self.turns.pop()

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
        """Forget the conversation (the pinned prefix stays)."""
        self.turns.clear()
        self.start = 0

    def save(self, path: PathLike, settings: dict[str, Any]) -> None:
        """As JSON: text and ids of every turn, the pinned prefix, the sampling settings."""
        data = {
            "format": TRANSCRIPT_FORMAT,
            "version": 1,
            "pinned": self.pinned,
            "settings": settings,
            "turns": [asdict(t) for t in self.turns],
        }
        write_atomic(Path(path), (json.dumps(data, ensure_ascii=False, indent=1) + "\n").encode())

    def load(self, path: PathLike, vocab_size: int) -> None:
        """Replace the turns with those saved by `save` (the pinned prefix stays)."""
        self.turns, self.start = read_transcript(path, vocab_size), 0


def read_transcript(path: PathLike, vocab_size: int) -> list[Turn]:
    """The turns of a saved transcript, checked: roles, text, ids within the vocabulary."""
    path = Path(path)
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
