"""ChatSession: turns kept in context, only new tokens prefilled, undo/regen/reset,
sliding with a pinned prefix, role tokens, interrupted replies, transcripts, the
default stop string."""

import json
from pathlib import Path

import pytest
import torch

from minigpt.config import SampleConfig
from minigpt.errors import ConfigError
from minigpt.generation.chat import DEFAULT_STOP, ROLE_TOKENS, ChatSession, chat_stop
from minigpt.generation.transcript import Turn
from minigpt.model import GPT
from minigpt.tokenizer.encodings import BPETokenizer, CharTokenizer, TiktokenTokenizer
from tests.conftest import tiny_config

TEXT = "abcdefghijklmnopqrstuvwxyz0123456789 ,.!?\n"


def char_session(block_size: int = 64, seed: int = 0, pinned: str = "", **config) -> ChatSession:
    tok = CharTokenizer.from_text(TEXT)
    torch.manual_seed(seed)
    model = GPT(tiny_config(vocab_size=tok.vocab_size, block_size=block_size)).eval()
    fields = dict(temperature=0.0, max_new_tokens=12, stop=("\n\n",)) | config
    return ChatSession(model, tok, SampleConfig(**fields), pinned=pinned)


def reply(session: ChatSession, text: str) -> str:
    return "".join(chunk.text for chunk in session.respond(text))


def test_turns_stay_in_context_and_the_second_turn_prefills_only_new_tokens() -> None:
    session = char_session()
    first = reply(session, "hello there")
    assert session.last.prefilled == len("hello there\n\n")
    assert [t.role for t in session.transcript.turns] == ["user", "model"]
    assert session.transcript.turns[1].text == first
    before, held = session.transcript.context_ids(), session.context.tokens[0].tolist()
    assert before[: len(held)] == held  # the cache holds the transcript so far, except
    assert len(before) - len(held) <= 3  # the reply's last token (+ a closing separator)
    second = reply(session, "and again")
    assert session.last.prefilled == len(before) - len(held) + len("and again\n\n")
    # the same transcript from scratch gives the same second reply
    fresh = char_session()
    fresh.transcript.turns = session.transcript.turns[:2]
    assert reply(fresh, "and again") == second
    t = session.transcript
    assert fresh.last.prefilled == len(t.context_ids()) - len(t.turns[-1].ids)


def test_a_reply_stops_at_the_stop_string_and_keeps_its_ids() -> None:
    session = char_session(max_new_tokens=200)
    for _ in range(3):
        text = reply(session, "say something")
        assert "\n\n" not in text
        if session.last.ended == "stop":
            assert session.tokenizer.decode(session.transcript.turns[-1].ids).endswith("\n\n")
    assert session.last.ended in ("stop", "limit")


def test_no_stop_runs_to_the_limit() -> None:
    session = char_session(stop=(), max_new_tokens=30)
    reply(session, "go on")
    assert session.last.ended == "limit" and session.last.tokens == 30


def test_regenerate_undo_reset() -> None:
    session = char_session(temperature=1.0, max_new_tokens=20)
    reply(session, "one")
    reply(session, "two")
    first = session.transcript.turns[-1].text
    again = "".join(c.text for c in session.regenerate())
    assert len(session.transcript.turns) == 4 and session.transcript.turns[2].text == "two"
    assert again == session.transcript.turns[-1].text  # (a new draw; may differ from `first`)
    assert isinstance(first, str)
    t = session.transcript
    assert t.undo() == 2 and [turn.text for turn in t.turns][:1] == ["one"]
    session.transcript.reset()
    assert session.transcript.turns == [] and session.transcript.context_ids() == []


def test_seed_makes_replies_repeatable() -> None:
    a = char_session(temperature=1.0, max_new_tokens=20)
    b = char_session(temperature=1.0, max_new_tokens=20)
    assert reply(a, "hi") == reply(b, "hi")
    a.set(seed=5)
    b.set(seed=5)
    assert "".join(c.text for c in a.regenerate()) == "".join(c.text for c in b.regenerate())
    with pytest.raises(ConfigError):
        a.set(temperature=-1.0)


def test_an_interrupted_reply_keeps_what_was_printed() -> None:
    session = char_session(stop=(), max_new_tokens=50)
    stream = session.respond("tell me")
    printed = [next(stream).text for _ in range(5)]
    stream.close()  # what the REPL does on Ctrl-C
    assert session.last.ended == "interrupted"
    last = session.transcript.turns[-1]
    assert last.role == "model" and last.text == "".join(printed)
    reply(session, "more")  # the session goes on
    assert session.transcript.turns[-1].role == "model" and len(session.transcript.turns) == 4


def test_long_conversations_slide_with_the_pinned_prefix_and_say_so_once() -> None:
    session = char_session(block_size=48, max_new_tokens=10, pinned="rules, be kind.\n")
    pinned = session.tokenizer.encode("rules, be kind.\n")
    notices = []
    for i in range(8):
        reply(session, f"turn number {i}")
        notices += session.take_notices()
        assert len(session.transcript.context_ids()) <= 48
        assert session.context.tokens[0, : len(pinned)].tolist() == pinned
    t = session.transcript
    assert t.start > 0 and len(t.turns) == 16  # all still in the transcript
    assert len(notices) == 1 and "slides out" in notices[0] and "pinned" in notices[0]


def test_a_pinned_prefix_longer_than_half_the_window_is_refused() -> None:
    with pytest.raises(ConfigError, match="pinned prefix"):
        char_session(block_size=16, pinned="a" * 9)


def test_role_tokens_are_used_when_the_tokenizer_has_them() -> None:
    ranks = {bytes([b]): b for b in range(256)}
    special = {name: 256 + i for i, name in enumerate(("<|endoftext|>", *ROLE_TOKENS))}
    tok = BPETokenizer(ranks, special_tokens=special)
    config = tiny_config(vocab_size=tok.vocab_size, bias=True, tie_embeddings=False)
    model = GPT(config).eval()
    with torch.no_grad():  # the final vector is all ones; only <|assistant_end|> reads it
        model.ln_f.weight.zero_()
        model.ln_f.bias.fill_(1.0)
        model.lm_head.weight.zero_()
        model.lm_head.weight[special["<|assistant_end|>"]] = 1.0
    session = ChatSession(model, tok, SampleConfig(temperature=0.0, max_new_tokens=8))
    reply(session, "hi")
    user = session.transcript.turns[0].ids
    assert user[0] == special["<|user_start|>"] and user[-2:] == [
        special["<|user_end|>"],
        special["<|assistant_start|>"],
    ]
    assert session.transcript.turns[1].ids == [special["<|assistant_end|>"]]
    assert session.transcript.turns[1].text == "" and session.last.ended == "stop token"


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    session = char_session()
    reply(session, "remember this")
    path = tmp_path / "chat.json"
    session.save(path)
    other = char_session()
    other.load(path)
    assert [(t.role, t.text, t.ids) for t in other.transcript.turns] == [
        (t.role, t.text, t.ids) for t in session.transcript.turns
    ]
    assert reply(other, "next") == reply(session, "next")


@pytest.mark.parametrize(
    "content",
    [b"", b"not json", b"[]", b'{"format": "other"}', b'{"format": "minigpt-chat"}',
     b'{"format": "minigpt-chat", "turns": [{"role": "x", "text": "", "ids": []}]}',
     b'{"format": "minigpt-chat", "turns": [{"role": "user", "text": "", "ids": [99999]}]}',
     b'{"format": "minigpt-chat", "turns": [{"role": "user", "text": "", "ids": [true]}]}',
     b'{"format": "minigpt-chat", "turns": [{"role": "user", "text": "", "ids": []}]}',
     b"\xff\xfe"],
)  # fmt: skip
def test_bad_transcripts_are_refused_and_the_session_is_unchanged(
    tmp_path: Path, content: bytes
) -> None:
    session = char_session()
    reply(session, "keep me")
    before = list(session.transcript.turns)
    path = tmp_path / "bad.json"
    path.write_bytes(content)
    with pytest.raises(ConfigError):
        session.load(path)
    assert session.transcript.turns == before
    with pytest.raises(ConfigError, match="cannot read"):
        session.load(tmp_path / "missing.json")


def test_turn_is_plain_data() -> None:
    turn = Turn("user", "x", [1])
    assert json.loads(json.dumps(turn.__dict__)) == {"role": "user", "text": "x", "ids": [1]}


def test_undo_and_regenerate_after_a_reply_longer_than_the_window() -> None:
    session = char_session(block_size=32, stop=(), max_new_tokens=100)
    reply(session, "short")
    reply(session, "a long one")  # 100 tokens: everything before it slides out
    assert session.transcript.start >= 2
    assert session.transcript.undo() == 2
    again = "".join(c.text for c in session.regenerate())
    assert session.transcript.turns[-1].text == again and len(session.transcript.turns) == 2


def test_regenerate_needs_a_user_turn() -> None:
    session = char_session()
    with pytest.raises(ConfigError, match="nothing to regenerate"):
        session.regenerate()
    session.transcript.turns = [Turn("model", "hi", [1, 2])]
    with pytest.raises(ConfigError, match="nothing to regenerate"):
        session.regenerate()
    assert len(session.transcript.turns) == 1


def test_a_separator_the_vocabulary_lacks_is_refused_up_front() -> None:
    with pytest.raises(ConfigError, match="--stop"):
        char_session(stop=("\u00a7",))


def test_a_role_model_stopped_by_a_stop_string_closes_its_turn() -> None:
    ranks = {bytes([b]): b for b in range(256)}
    special = {name: 256 + i for i, name in enumerate(("<|endoftext|>", *ROLE_TOKENS))}
    tok = BPETokenizer(ranks, special_tokens=special)
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=tok.vocab_size, block_size=64)).eval()
    config = SampleConfig(temperature=1.0, max_new_tokens=40, stop=("a", "e", "o", " "))
    session = ChatSession(model, tok, config)
    for _ in range(3):
        reply(session, "hi")
        assert session.transcript.turns[-1].ids[-1] == special["<|assistant_end|>"]


def test_the_default_stop_is_a_blank_line_for_plain_models_only() -> None:
    plain = CharTokenizer.from_text(TEXT)
    ranks = {bytes([b]): b for b in range(256)}
    special = {name: 256 + i for i, name in enumerate(("<|endoftext|>", *ROLE_TOKENS))}
    roles = BPETokenizer(ranks, special_tokens=special)
    assert chat_stop(plain) == DEFAULT_STOP == ("\n\n",)
    assert chat_stop(plain, no_stop=True) == () == chat_stop(roles)
    assert chat_stop(plain, ["x"]) == ("x",) == chat_stop(roles, ("x",))
    model = GPT(tiny_config(vocab_size=plain.vocab_size)).eval()
    assert ChatSession(model, plain).config.stop == DEFAULT_STOP


def test_a_turn_longer_than_the_window_is_saved_whole_and_loads_back(tmp_path: Path) -> None:
    session = char_session(block_size=32)
    long = "a long turn that does not fit in the window at all"
    reply(session, long)
    t = session.transcript
    assert t.cut > 0 and len(t.context_ids()) <= 32  # the model saw the turn's end only
    assert session.tokenizer.decode(t.turns[0].ids) == long + "\n\n"  # kept whole
    session.save(tmp_path / "chat.json")
    other = char_session(block_size=32)
    other.load(tmp_path / "chat.json")
    assert other.transcript.turns[0].ids == t.turns[0].ids
    assert reply(other, "next") == reply(session, "next")  # it sees the same end


def test_a_transcript_whose_text_is_not_its_ids_is_refused(tmp_path: Path) -> None:
    session = char_session()
    reply(session, "the real words")
    path = tmp_path / "chat.json"
    session.save(path)
    data = json.loads(path.read_text())
    data["turns"][0]["text"] = "other words"  # shown, but not what the ids say
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="turn 1 do not spell its text"):
        char_session().load(path)
    data["version"] = 3
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match="reads versions 1 and 2"):
        char_session().load(path)


def test_transcripts_cross_between_char_and_tiktoken_models_are_refused(tmp_path: Path) -> None:
    gpt2 = TiktokenTokenizer("gpt2")
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=gpt2.vocab_size, block_size=64)).eval()
    wide = ChatSession(model, gpt2, SampleConfig(temperature=0.0, max_new_tokens=4))
    narrow = char_session()
    for writer, reader in ((wide, narrow), (narrow, wide)):
        reply(writer, "hello")
        writer.save(tmp_path / "chat.json")
        with pytest.raises(ConfigError, match="saved with another tokenizer"):
            reader.load(tmp_path / "chat.json")
    other = ChatSession(model, TiktokenTokenizer("gpt2"), wide.config)
    reply(wide, "again")
    wide.save(tmp_path / "wide.json")
    other.load(tmp_path / "wide.json")  # the same tokenizer: loads
    assert [t.ids for t in other.transcript.turns] == [t.ids for t in wide.transcript.turns]


def test_load_restores_the_saved_settings_but_keeps_the_stop_strings(tmp_path: Path) -> None:
    saver = char_session(temperature=0.5, top_k=7, stop=("x",))
    saver.set(seed=3)  # (char_session's seed is the model's)
    reply(saver, "hello")
    saver.save(tmp_path / "chat.json")
    loader = char_session(temperature=1.0)
    restored = loader.load(tmp_path / "chat.json")
    assert restored == loader.config and loader.config.stop == ("\n\n",)
    assert (loader.config.temperature, loader.config.top_k, loader.config.seed) == (0.5, 7, 3)
    again = char_session(temperature=0.5, top_k=7)
    again.set(seed=3)
    again.transcript.restore(list(loader.transcript.turns))
    assert reply(loader, "more") == reply(again, "more")  # the random stream restarted too


def test_bad_saved_settings_change_nothing(tmp_path: Path) -> None:
    saver = char_session()
    reply(saver, "hello")
    saver.save(tmp_path / "chat.json")
    data = json.loads((tmp_path / "chat.json").read_text())
    data["settings"]["temperature"] = -1.0
    (tmp_path / "chat.json").write_text(json.dumps(data))
    loader = char_session(temperature=1.0)
    with pytest.raises(ConfigError, match="saved settings are refused: temperature"):
        loader.load(tmp_path / "chat.json")
    assert loader.transcript.turns == [] and loader.config.temperature == 1.0


def test_keep_shown_trims_an_interrupted_reply_to_what_was_shown() -> None:
    session = char_session(max_new_tokens=20, stop=())
    text = reply(session, "hello")
    session.keep_shown(text[:5])
    assert session.transcript.turns[-1].text == text[:5]
    session.keep_shown("not a beginning")  # ignored
    assert session.transcript.turns[-1].text == text[:5]
