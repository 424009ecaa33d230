"""What `minigpt chat` says about itself, in plain words: `/stats` (what the model sees
of the conversation, the last reply, the settings, how it computes), the settings a
loaded transcript restored, and the legend of `/probs on`. Text only: the numbers are
the session's, the REPL prints the words."""

from __future__ import annotations

from rich.text import Text

from minigpt.cli.options import Compute, probability_legend
from minigpt.config import SampleConfig
from minigpt.generation.chat import ChatSession, ReplyStats

ENDINGS = {
    "stop": "it ended at a stop string",
    "stop token": "it ended at the model's end-of-reply token",
    "limit": "it reached the token limit",
    "no valid token": "the model gave no token that could come next a usable score",
    "interrupted": "you stopped it (Ctrl-C)",
}


def count(n: int, word: str) -> str:
    """'1 token', '2 tokens'."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def stats_text(session: ChatSession, compute: Compute) -> str:
    """/stats: four sentences, one a line."""
    c = session.config
    return "\n".join(
        [
            view_sentence(session),
            reply_sentence(session.last),
            f"Settings: {settings_words(c)}; {stop_words(c.stop)}.",
            f"Computing with {compute}.",
        ]
    )


def view_sentence(session: ChatSession) -> str:
    """'The model sees 57 of its 128-token window: the last 2 of 4 turns (2 scrolled
    out).'"""
    t = session.transcript
    head = (
        f"The model sees {len(t.context_ids())} of its "
        f"{session.model.config.block_size}-token window"
    )
    total, shown = len(t.turns), len(t.turns) - t.start
    if total == 0:
        which = "no turns yet"
    elif t.start == 0:
        which = "the only turn" if total == 1 else f"all {total} turns"
    else:
        last = "the last turn" if shown == 1 else f"the last {shown}"
        which = f"{last} of {total} ({t.start} scrolled out)"
    if t.cut:
        which += ", the first of them only by its end"
    if t.pinned_ids:
        which += f", after {count(len(t.pinned_ids), 'pinned token')}"
    return f"{head}: {which}."


def reply_sentence(last: ReplyStats) -> str:
    """'Last reply: 12 tokens in 0.4 s (30 tokens/s); first token after 35 ms; it ended
    at a stop string.'"""
    if not last.ended:
        return "No reply yet."
    rate = f"{last.tokens_per_s:.0f}" if last.tokens_per_s >= 10 else f"{last.tokens_per_s:.1f}"
    read = f", once the model had read {count(last.prefilled, 'new context token')}"
    words = [
        f"Last reply: {count(last.tokens, 'token')} in {last.seconds:.1f} s ({rate} tokens/s)",
        f"first token after {last.first_token_s * 1000:.0f} ms{read if last.prefilled else ''}",
        ENDINGS.get(last.ended, f"it ended: {last.ended}"),
    ]
    return "; ".join(words) + "."


def settings_words(c: SampleConfig) -> str:
    """'temperature 0.8, top-k off, top-p off, min-p off, up to 200 tokens a reply, seed
    1337' (and the penalties, when any is on)."""
    words = [
        f"temperature {c.temperature}",
        f"top-k {c.top_k or 'off'}",
        f"top-p {c.top_p or 'off'}",
        f"min-p {c.min_p or 'off'}",
        f"up to {count(c.max_new_tokens, 'token')} a reply",
        f"seed {c.seed}",
    ]
    if c.ignore_eos:
        words.append("going on past <|endoftext|>")
    if c.repetition_penalty != 1.0 or c.presence_penalty or c.frequency_penalty:
        words += [
            f"repetition penalty {c.repetition_penalty}",
            f"presence penalty {c.presence_penalty}",
            f"frequency penalty {c.frequency_penalty}",
            f"penalties over the last {count(c.penalty_window, 'token')}",
        ]
    return ", ".join(words)


def stop_words(stop: tuple[str, ...]) -> str:
    """'replies stop at a blank line', or at the stop strings given, or not at all."""
    if not stop:
        return "no stop string"
    named = ["a blank line" if s == "\n\n" else repr(s) for s in stop]
    return "replies stop at " + " or ".join(named)


def probability_legend_text() -> Text:
    """'probabilities on: green ≥ 0.5, yellow ≥ 0.1, red below', each colour in itself."""
    legend = Text("probabilities on: ", style="dim")
    for i, (words, style) in enumerate(probability_legend()):
        legend.append(", " if i else "", style="dim")
        legend.append(words, style=style)
    return legend
