"""Samples are always clean text: never bytes that are not UTF-8 (the mask of
`minigpt.generation.utf8`), never an incomplete last character, never a special
token's name; `<|endoftext|>` ends a sample or a chat reply unless --ignore-eos."""

import codecs
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from minigpt.checkpoint import load_checkpoint, save_checkpoint
from minigpt.cli import main
from minigpt.config import SampleConfig
from minigpt.errors import GenerationError
from minigpt.generation.chat import ChatSession
from minigpt.generation.generate import Step, TextGeneration, generate, generate_text
from minigpt.generation.sampling import mask_blocked, sample_next_token
from minigpt.generation.text import TextStream
from minigpt.generation.utf8 import (
    AFTER_E0,
    AFTER_ED,
    AFTER_EF,
    AFTER_EF_BF,
    AFTER_F0,
    AFTER_F4,
    COMPLETE,
    DEAD,
    NEED1,
    NEED2,
    NEED3,
    STATES,
    build_tables,
    run_bytes,
)
from minigpt.model import GPT
from minigpt.tokenizer import ENDOFTEXT, BPETokenizer, CharTokenizer, TiktokenTokenizer, Tokenizer
from minigpt.tokenizer.files import train_tokenizer
from tests.conftest import tiny_config

KOREAN = "안녕하세요. 오늘은 날씨가 좋습니다. 우리는 공원에서 산책을 했습니다. 얘들아, 밥 먹자!\n"
JAPANESE = "こんにちは。今日はいい天気ですね。私たちは公園を散歩しました。日本語のテキストです。\n"
EMOJI = "🎉🚀 emoji mix é ü 😀👍🏽 👨‍👩‍👧 ✨🔥 party time 🥳\n"
CORPUS = (KOREAN + JAPANESE + EMOJI) * 20
PROMPTS = ("안녕", "日本語", "🎉 ")
KINDS = ("char", "bpe", "gpt2")


@pytest.fixture(scope="module")
def tokenizers() -> dict[str, Tokenizer]:
    return {
        "char": CharTokenizer.from_text(CORPUS),
        "bpe": train_tokenizer("bpe", CORPUS, vocab_size=300),
        "gpt2": TiktokenTokenizer("gpt2"),
    }


def random_model(tok: Tokenizer, seed: int) -> GPT:
    torch.manual_seed(seed)
    return GPT(tiny_config(vocab_size=tok.vocab_size, block_size=64)).eval()


def biased_model(tok: Tokenizer, ids: list[int], logit: float) -> GPT:
    """A model whose every final vector is all ones, and whose logit of each of `ids` is
    `logit` (the others' are near 0), whatever the context."""
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=tok.vocab_size, block_size=64))  # layernorm, tied
    with torch.no_grad():
        model.ln_f.weight.zero_()
        model.ln_f.bias.fill_(1.0)
        model.wte.weight[ids] = logit / model.config.n_embd
    return model.eval()


def eot_prone_model(tok: Tokenizer, eot_logit: float) -> GPT:
    """It draws `<|endoftext|>` now and then, at any position."""
    assert tok.eot_id is not None
    return biased_model(tok, [tok.eot_id], eot_logit)


def byte_hungry_model(tok: Tokenizer) -> GPT:
    """It prefers the tokens that hold bytes above ASCII: lead bytes, continuation
    bytes, parts of characters, in any order."""
    special = tok.special_ids
    ids = [
        i for i in range(tok.vocab_size) if i not in special and not tok.token_bytes(i).isascii()
    ]
    return biased_model(tok, ids, 4.0)


def byte_text(tok: Tokenizer, ids: list[int]) -> bytes:
    """The bytes the ids stand for, special tokens standing for none."""
    return tok.decode_bytes([i for i in ids if i not in tok.special_ids])


def whole_characters(data: bytes) -> str:
    """`data` decoded up to its last complete character; raises if it is not UTF-8."""
    return codecs.getincrementaldecoder("utf-8")("strict").decode(data)


def assert_clean(tok: Tokenizer, text: str, ids: list[int]) -> None:
    assert "\ufffd" not in text
    for special in tok.special_ids:
        assert tok.token_bytes(special).decode() not in text
    assert run_bytes(byte_text(tok, ids)) != DEAD
    assert text == whole_characters(byte_text(tok, ids))


# ---------------------------------------------------------------------------------
# The automaton on hand-picked bytes, and against Python's own decoder.


@pytest.mark.parametrize(
    ("data", "state"),
    [
        (b"abc", COMPLETE),
        ("안".encode(), COMPLETE),  # EC 95 88
        ("안".encode()[:1], NEED2),
        ("안".encode()[:2], NEED1),
        ("🎉".encode()[:1], AFTER_F0),  # F0 9F 8E 89
        ("🎉".encode()[:2], NEED2),
        (b"\xf1", NEED3),
        (b"\xe0", AFTER_E0),
        (b"\xe0\xa0\x80", COMPLETE),  # U+0800, the smallest 3-byte character
        (b"\xe0\x80", DEAD),  # overlong: U+0000..U+07FF in three bytes
        (b"\xed", AFTER_ED),
        (b"\xed\x9f\xbf", COMPLETE),  # U+D7FF, just below the surrogates
        (b"\xed\xa0", DEAD),  # a surrogate, U+D800
        (b"\xf0\x80", DEAD),  # overlong 4-byte form
        (b"\xf4", AFTER_F4),
        (b"\xf4\x8f\xbf\xbf", COMPLETE),  # U+10FFFF, the last code point
        (b"\xf4\x90", DEAD),  # above U+10FFFF
        (b"\x80", DEAD),  # a lone continuation byte
        (b"a\xbf", DEAD),
        (b"\xc2\x80\x80", DEAD),  # one continuation too many
        (b"\xc2a", DEAD),  # a lead byte cut short by ASCII
        (b"\xc0", DEAD),
        (b"\xc1", DEAD),
        (b"\xf5", DEAD),
        (b"\xff", DEAD),
        ("ｱ".encode(), COMPLETE),  # EF BD B1
        (b"\xef", AFTER_EF),
        (b"\xef\xbf", AFTER_EF_BF),
        (b"\xef\xbf\xbe", COMPLETE),  # U+FFFE: valid, if not a character
        (b"\xef\xbf\xbd", DEAD),  # U+FFFD, what a broken character prints as
    ],
)
def test_the_automaton_on_hand_picked_bytes(data: bytes, state: int) -> None:
    assert run_bytes(data) == state


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=12) | st.text(max_size=6).map(str.encode) | st.just(b"\xef\xbf\xbd"))
def test_the_automaton_agrees_with_pythons_utf8_decoder(data: bytes) -> None:
    """Dead exactly when no continuation could make the bytes UTF-8 without U+FFFD;
    complete exactly when they are such text as they stand."""
    try:
        prefix_valid = "\ufffd" not in whole_characters(data)
    except UnicodeDecodeError:
        prefix_valid = False
    assert (run_bytes(data) != DEAD) == prefix_valid
    complete = data.decode("utf-8", errors="ignore").encode() == data
    assert (run_bytes(data) == COMPLETE) == (complete and prefix_valid)


def test_gpt2_tables_agree_with_the_automaton_token_by_token(tokenizers) -> None:
    tok = tokenizers["gpt2"]
    tables = build_tables(tok, tok.vocab_size + 7)  # a model padded past the vocabulary
    assert tables is not None and tables.blocked.shape == (STATES, tok.vocab_size + 7)
    assert tables.blocked[:, tok.vocab_size :].all()
    ids = list(range(0, tok.vocab_size - 1, 37)) + [tok.encode("안")[0], tok.encode("🎉")[0]]
    for i in ids:
        for state in range(STATES):
            end = run_bytes(tok.token_bytes(i), state)
            assert bool(tables.blocked[state, i]) == (end == DEAD), (i, state)
            if end != DEAD:
                assert int(tables.next_state[state, i]) == end
    eot = tok.eot_id
    assert not tables.blocked[:, eot].any()  # a special token adds no bytes: anywhere,
    assert tables.next_state[:, eot].tolist() == list(range(STATES))  # state unchanged
    byte_80 = next(i for i in range(256) if tok.token_bytes(i) == b"\x80")
    assert tables.blocked[COMPLETE, byte_80] and not tables.blocked[NEED1, byte_80]
    assert tables.next_state[NEED3, byte_80] == NEED2


def test_each_row_of_a_batch_keeps_its_own_state(tokenizers) -> None:
    tok = tokenizers["gpt2"]
    tables = build_tables(tok, tok.vocab_size)
    assert tables is not None
    part, a = tok.encode("안")[0], tok.encode("a")[0]
    assert run_bytes(tok.token_bytes(part)) not in (COMPLETE, DEAD)  # part of a character
    rows = tables.rows(2)
    rows.advance(torch.tensor([part, a]))
    assert rows.states.tolist() == [run_bytes(tok.token_bytes(part)), COMPLETE]
    blocked = rows.blocked()  # (2, V)
    assert blocked[0, a] and not blocked[1, a]
    assert not blocked[0, tok.eot_id] and not blocked[1, tok.eot_id]


def test_a_char_tokenizer_needs_no_mask_and_a_byte_level_one_always_has_a_way_on(
    tokenizers,
) -> None:
    assert build_tables(tokenizers["char"], tokenizers["char"].vocab_size) is None
    for kind in ("bpe", "gpt2"):
        tables = build_tables(tokenizers[kind], tokenizers[kind].vocab_size)
        assert tables is not None
        non_special = torch.ones(tokenizers[kind].vocab_size, dtype=torch.bool)
        non_special[list(tokenizers[kind].special_ids)] = False
        assert (~tables.blocked[:, non_special]).any(dim=-1).all()  # every state goes on


# ---------------------------------------------------------------------------------
# The mask in sampling: first, for greedy too; a row with nothing left.


def test_the_mask_comes_before_every_filter_and_greedy() -> None:
    logits = torch.tensor([[5.0, 4.0, 1.0, 0.0]])
    blocked = torch.tensor([[True, True, False, False]])
    assert sample_next_token(logits, SampleConfig(temperature=0.0), blocked=blocked) == 2
    top1 = SampleConfig(temperature=1.0, top_k=1)
    assert sample_next_token(logits, top1, torch.Generator(), blocked=blocked) == 2
    # min-p measures against the likeliest *allowed* token: 0 survives beside 2
    draws = sample_next_token(
        logits.expand(500, 4), SampleConfig(temperature=1.0, min_p=0.3),
        torch.Generator().manual_seed(0), blocked=blocked.expand(500, 4),
    )  # fmt: skip
    assert set(draws.tolist()) == {2, 3}


def test_a_row_with_no_allowed_finite_logit_is_stuck_not_drawn_from() -> None:
    logits = torch.tensor([[1.0, float("-inf"), 2.0], [1.0, 2.0, 3.0]])
    blocked = torch.tensor([[True, False, True], [True, False, True]])
    masked, stuck = mask_blocked(logits, blocked)
    assert stuck is not None and stuck.tolist() == [True, False]
    assert masked[0].tolist() == logits[0].tolist()  # kept, for the caller to end
    assert masked[1].tolist() == [float("-inf"), 2.0, float("-inf")]
    with pytest.raises(GenerationError, match="no finite logit"):
        sample_next_token(logits, SampleConfig(), blocked=blocked)


def test_a_stuck_row_ends_its_sequence_and_the_others_go_on() -> None:
    tok = CharTokenizer.from_text("ab")
    stuck = torch.tensor([False, True])

    def steps() -> Iterator[Step]:
        yield Step(torch.tensor([0, 1]), torch.zeros(2))
        yield Step(torch.tensor([1, 0]), torch.zeros(2), stuck=stuck)
        yield Step(torch.tensor([0, 0]), torch.zeros(2))

    generation = TextGeneration(steps(), tok, 2)
    list(generation)
    first, second = generation.completions
    assert (first.text, first.finish) == ("aba", "limit")
    assert (second.text, second.finish, second.ids) == ("b", "no valid token", [1])


# ---------------------------------------------------------------------------------
# Random and briefly trained models, at a high temperature: clean text every time.


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("kind", KINDS)
def test_random_models_write_only_whole_characters(tokenizers, kind: str, seed: int) -> None:
    tok = tokenizers[kind]
    model = random_model(tok, seed) if seed < 2 or kind == "char" else byte_hungry_model(tok)
    prompt = PROMPTS[seed]
    config = SampleConfig(max_new_tokens=32, temperature=2.0, num_samples=6, seed=seed)
    generation = generate_text(model, tok, tok.encode(prompt), config)
    chunks = list(generation)
    assert all("\ufffd" not in c.text for c in chunks)
    for completion in generation.completions:
        assert_clean(tok, completion.text, completion.ids)
        if tok.eot_id in completion.ids:
            assert completion.ids.index(tok.eot_id) == len(completion.ids) - 1
            assert completion.finish == "stop token"


@pytest.mark.parametrize(("kind", "seed"), [("bpe", 0), ("bpe", 2), ("gpt2", 2)])
def test_without_the_mask_the_same_models_write_bytes_that_are_not_text(
    tokenizers, kind: str, seed: int
) -> None:
    """What the mask prevents (and what main printed as U+FFFD): a model and settings
    of the test above, drawn without the mask, give bytes no UTF-8 decoder accepts."""
    tok = tokenizers[kind]
    model = random_model(tok, seed) if seed < 2 else byte_hungry_model(tok)
    prompt = torch.tensor([tok.encode(PROMPTS[seed])])
    config = SampleConfig(max_new_tokens=32, temperature=2.0, num_samples=6, seed=seed)
    steps = generate(model, prompt, config, torch.Generator().manual_seed(seed))
    rows = torch.stack([s.token for s in steps], dim=1).tolist()  # (6, 32)
    assert sum(run_bytes(byte_text(tok, row)) == DEAD for row in rows) >= 3


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`minigpt train` for a few steps of the tiny preset on Korean, Japanese and emoji
    text, with its own BPE of 300 tokens: undertrained, as in the report."""
    root = tmp_path_factory.mktemp("cjk")
    (root / "cjk.txt").write_text(CORPUS * 3, encoding="utf-8")
    args = ["train", root / "cjk.txt", "--preset", "tiny", "--tokenizer", "bpe",
            "--vocab-size", 300, "--max-iters", 4, "--eval-interval", 2, "--out", root,
            "--run", "r"]  # fmt: skip
    assert main([str(a) for a in args]) == 0
    return root / "r"


def run_cli(capsys: pytest.CaptureFixture, *args: object) -> str:
    code = main([str(a) for a in args])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


@pytest.mark.parametrize("prompt", PROMPTS)
def test_a_briefly_trained_model_samples_clean_text_through_the_cli(
    corpus_run: Path, capsys: pytest.CaptureFixture, prompt: str
) -> None:
    out = run_cli(capsys, "sample", "-c", corpus_run, "-p", prompt, "--temperature", 2,
                  "-n", 40, "--num-samples", 8, "--json")  # fmt: skip
    record = json.loads(out)
    tok = load_checkpoint(corpus_run).tokenizer
    for sample in record["samples"]:
        assert_clean(tok, sample["text"], sample["token_ids"])
        assert sample["finish"] in ("stop token", "limit")
    streamed = run_cli(capsys, "sample", "-c", corpus_run, "-p", prompt, "--temperature", 2,
                       "-n", 60, "--raw")  # fmt: skip
    assert streamed.startswith(prompt)
    assert "\ufffd" not in streamed and ENDOFTEXT not in streamed
    table = run_cli(capsys, "sample", "-c", corpus_run, "-p", prompt, "--temperature", 2,
                    "-n", 20, "--show-probs")  # fmt: skip
    assert "\ufffd" not in table  # a token holding part of a character reads <EC><96>


# ---------------------------------------------------------------------------------
# <|endoftext|> ends a sample (or goes on with --ignore-eos); special tokens never print.


def test_a_sample_that_draws_eot_stops_there_without_printing_it(tokenizers) -> None:
    tok = tokenizers["bpe"]
    model = eot_prone_model(tok, eot_logit=5.0)
    config = SampleConfig(max_new_tokens=30, temperature=1.0, num_samples=8, seed=1)
    generation = generate_text(model, tok, tok.encode("안녕"), config)
    list(generation)
    ended = [c for c in generation.completions if c.finish == "stop token"]
    assert len(ended) >= 4 and any(len(c.ids) > 1 for c in ended)
    for c in ended:
        assert c.ids[-1] == tok.eot_id and c.ids.count(tok.eot_id) == 1
        assert_clean(tok, c.text, c.ids)
    record = generation.record("안녕", tok.encode("안녕"), config)
    assert [s["finish"] for s in record["samples"]] == [c.finish for c in generation.completions]
    assert all(ENDOFTEXT not in s["text"] for s in record["samples"])


def test_ignore_eos_goes_on_and_the_eot_adds_no_text(tokenizers) -> None:
    tok = tokenizers["bpe"]
    model = eot_prone_model(tok, eot_logit=5.0)
    config = SampleConfig(max_new_tokens=30, temperature=1.0, num_samples=8, seed=1,
                          ignore_eos=True)  # fmt: skip
    generation = generate_text(model, tok, tok.encode("안녕"), config)
    list(generation)
    assert all(c.finish == "limit" and len(c.ids) == 30 for c in generation.completions)
    assert sum(c.ids[:-1].count(tok.eot_id) for c in generation.completions) >= 4
    for c in generation.completions:
        assert_clean(tok, c.text, c.ids)


def test_no_special_token_is_ever_text() -> None:
    """A tokenizer.json may define several special tokens; none of them prints."""
    names = [ENDOFTEXT, "<|user_start|>", "<|pad|>"]
    tok = BPETokenizer({bytes([b]): b for b in range(256)},
                       special_tokens={name: 256 + i for i, name in enumerate(names)})  # fmt: skip
    assert tok.special_ids == {256, 257, 258}
    ids = [*tok.encode("가"), 257, *tok.encode("나"), 258, 256, *tok.encode("다")]
    stream = TextStream(tok)
    assert "".join(stream.feed([i]) for i in ids) + stream.finish() == "가나다"
    rows = [[*tok.encode("가"), 257, 258, *tok.encode("나"), 256, 97]]
    steps = (Step(torch.tensor(col), torch.zeros(1)) for col in zip(*rows, strict=True))
    generation = TextGeneration(steps, tok, 1)
    list(generation)
    assert generation.completions[0].text == "가나"
    assert generation.completions[0].finish == "stop token"


def test_an_unfinished_last_character_is_dropped_not_printed_as_a_replacement() -> None:
    tok = TiktokenTokenizer("gpt2")
    ids = tok.encode("ok 🎉")
    assert len(tok.token_bytes(ids[-1])) < 4  # the emoji is split across tokens
    stream = TextStream(tok)
    text = "".join(stream.feed([i]) for i in ids[:-1]) + stream.finish()
    assert text == "ok "


@pytest.fixture(scope="module")
def eot_checkpoint(tmp_path_factory: pytest.TempPathFactory, tokenizers) -> Path:
    tok = tokenizers["bpe"]
    path = tmp_path_factory.mktemp("eot") / "run" / "latest"
    save_checkpoint(path, eot_prone_model(tok, eot_logit=5.0), tok, {"step": 0})
    return path


def test_ignore_eos_through_the_real_cli(eot_checkpoint: Path, capsys) -> None:
    args = ("sample", "-c", eot_checkpoint, "-p", "안녕", "-n", 30, "--num-samples", 4, "--json")
    stopped = json.loads(run_cli(capsys, *args))
    going_on = json.loads(run_cli(capsys, *args, "--ignore-eos"))
    assert going_on["settings"]["ignore_eos"] is True
    eot = stopped["samples"][0]["token_ids"][-1]
    assert all(s["finish"] == "stop token" for s in stopped["samples"])
    assert all(s["token_ids"][-1] == eot for s in stopped["samples"])
    assert all(s["finish"] == "limit" and len(s["token_ids"]) == 30 for s in going_on["samples"])
    assert any(eot in s["token_ids"][:-1] for s in going_on["samples"])
    for record in (stopped, going_on):
        assert all(ENDOFTEXT not in s["text"] for s in record["samples"])
    printed = run_cli(capsys, "sample", "-c", eot_checkpoint, "-p", "안녕", "-n", 60,
                      "--ignore-eos", "--raw")  # fmt: skip
    assert printed.startswith("안녕") and ENDOFTEXT not in printed and "\ufffd" not in printed


def test_chat_takes_ignore_eos_and_never_prints_the_token(
    eot_checkpoint: Path, tmp_path: Path
) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "minigpt", "chat", "-c", str(eot_checkpoint), "-n", "40",
         "--ignore-eos"],
        input="안녕\n", capture_output=True, text=True, timeout=120,
        env={**os.environ, "HOME": str(tmp_path)}, cwd=tmp_path,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert ENDOFTEXT not in done.stdout and "\ufffd" not in done.stdout


def test_a_chat_reply_ends_at_eot(tokenizers) -> None:
    tok = tokenizers["bpe"]
    model = eot_prone_model(tok, eot_logit=8.0)  # eot nearly every time
    config = SampleConfig(max_new_tokens=30, temperature=1.0, stop=("\n\n",))
    session = ChatSession(model, tok, config)
    text = "".join(chunk.text for chunk in session.respond("안녕"))
    assert session.last.ended == "stop token" and ENDOFTEXT not in text
    reply = session.transcript.turns[-1]
    eot_at = reply.ids.index(tok.eot_id)
    assert reply.ids[eot_at + 1 :] == tok.encode("\n\n")  # the turn closed after it
    session.set(ignore_eos=True)
    text = "".join(chunk.text for chunk in session.respond("또"))
    assert session.last.ended == "limit" and session.last.tokens == 30
    assert ENDOFTEXT not in text and "\ufffd" not in text
