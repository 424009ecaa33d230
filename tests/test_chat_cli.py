"""`minigpt chat` through a real pseudo-terminal (pexpect), and with piped stdin;
`minigpt sample`'s --json, --show-probs and --prompt-file."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pexpect
import pytest
import torch

from minigpt.checkpoint import save_checkpoint
from minigpt.model import GPT
from minigpt.tokenizer.encodings import CharTokenizer
from tests.conftest import tiny_config

TEXT = "abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ,.:;!?'\n"
PROMPT = "you> "


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random char-level model: it babbles, which is all the REPL needs."""
    tok = CharTokenizer.from_text(TEXT)
    torch.manual_seed(0)
    model = GPT(tiny_config(vocab_size=tok.vocab_size, block_size=64))
    path = tmp_path_factory.mktemp("ckpt") / "run" / "latest"
    save_checkpoint(path, model, tok, {"step": 0})
    return path


def env(tmp_path: Path) -> dict[str, str]:
    return {**os.environ, "HOME": str(tmp_path), "TERM": "xterm", "COLUMNS": "100"}


def spawn(checkpoint: Path, tmp_path: Path, *args: str) -> pexpect.spawn:
    child = pexpect.spawn(
        sys.executable,
        ["-m", "minigpt", "chat", "-c", str(checkpoint), *args],
        env=env(tmp_path),
        cwd=str(tmp_path),
        encoding="utf-8",
        timeout=60,
        dimensions=(40, 100),
    )
    child.expect_exact("Ctrl-D to leave")
    child.expect_exact(PROMPT)
    return child


def test_a_session_through_a_real_terminal(checkpoint: Path, tmp_path: Path) -> None:
    child = spawn(checkpoint, tmp_path, "--temperature", "1", "-n", "30", "--no-stop")
    child.sendline("Hello there")
    child.expect_exact(PROMPT)  # the reply streamed, then a new prompt
    reply = child.before.split("Hello there", 1)[1].strip()
    assert reply and "Traceback" not in child.before

    child.sendline("/stats")
    child.expect(r"The model sees \d+ of its 64-token window: all 2 turns\.")
    child.expect(r"Last reply: 30 tokens in ")
    child.expect_exact(PROMPT)

    # Ctrl-C in the middle of a long reply: it stops, the session survives
    child.sendline("/max 1000000")
    child.expect_exact(PROMPT)
    child.sendline("Tell me a long story")
    child.expect_exact("Tell me a long story\r\n")
    child.expect(r"[a-zA-Z]{2}")  # some of the reply has streamed
    child.sendintr()
    child.expect_exact("(reply stopped)")
    child.expect_exact(PROMPT)
    child.sendline("/stats")
    child.expect(r"(all 4 turns|of 4 \().*you stopped it \(Ctrl-C\)")
    child.expect_exact(PROMPT)

    child.sendline("/undo")
    child.expect_exact("removed 2 turn(s)")
    child.sendline("/temp -1")
    child.expect("error: temperature must be >= 0")
    child.sendline("/bogus")
    child.expect_exact("unknown command /bogus")
    child.sendline("/save chat.json")
    child.expect_exact("saved 2 turns")
    child.sendline("/help")
    child.expect_exact("/regen")
    child.expect_exact(PROMPT)
    child.sendline("/max 10")
    child.expect_exact(PROMPT)
    child.sendline("/regen")
    child.expect_exact(PROMPT)
    child.sendline("/probs on")
    child.expect_exact("probabilities on")
    child.sendline("multi \\")
    child.expect_exact("...> ")
    child.sendline("line")
    child.expect_exact(PROMPT)
    # Ctrl-C on a continuation line cancels that input, not the session
    child.sendline("half \\")
    child.expect_exact("...> ")
    child.sendintr()
    child.expect_exact("(input cancelled)")
    child.expect_exact(PROMPT)
    for command, answer in [("/topk 5", "top-k 5"), ("/topp 0.9", "top-p 0.9"),
                            ("/topk off", "top-k off"), ("/seed 7", "seed 7"),
                            ("/load chat.json", "loaded 2 turns"), ("/reset", "cleared"),
                            ("/[/x]", "unknown command /[/x]"),
                            ("/seed 99999999999999999999", "error: seed must be")]:  # fmt: skip
        child.sendline(command)
        child.expect_exact(answer)
        child.expect_exact(PROMPT)
    child.sendline("/stats")
    child.expect(r"no turns yet")
    child.sendline("/quit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    saved = json.loads((tmp_path / "chat.json").read_text())
    assert [t["role"] for t in saved["turns"]] == ["user", "model"]
    assert saved["turns"][0]["text"] == "Hello there"
    assert (tmp_path / ".minigpt_history").read_text().count("Hello there") == 1


@pytest.mark.parametrize("key", ["ctrl-d", "ctrl-c"])
def test_an_empty_prompt_exits_cleanly(checkpoint: Path, tmp_path: Path, key: str) -> None:
    child = spawn(checkpoint, tmp_path)
    if key == "ctrl-d":
        child.sendeof()
    else:
        child.sendintr()
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
    assert "Traceback" not in child.before


def test_piped_stdin_prints_only_the_replies(checkpoint: Path, tmp_path: Path) -> None:
    lines = "Hello\n/temp 0\nAgain\n/save /nonexistent/dir/chat.json\n/stats\n"
    result = subprocess.run(
        [sys.executable, "-m", "minigpt", "chat", "-c", str(checkpoint), "-n", "12", "--no-stop"],
        input=lines, capture_output=True, text=True, env=env(tmp_path), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert PROMPT not in result.stdout and "Traceback" not in result.stderr
    assert "all 4 turns" in result.stdout
    assert "temperature 0" in result.stderr
    assert "error: No such file or directory" in result.stderr  # the session went on


def test_stop_replaces_the_blank_line(checkpoint: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "minigpt", "chat", "-c", str(checkpoint), "-n", "300",
         "--stop", "e", "--temperature", "2"],
        input="Hello\nagain\n", capture_output=True, text=True, env=env(tmp_path), timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    replies = result.stdout.replace("<|end of reply|>", "")  # each reply's end marker
    assert "e" not in replies.replace("\n", "")


def test_stop_and_no_stop_together_are_refused(checkpoint: Path, tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "minigpt", "chat", "-c", str(checkpoint), "--stop", "x",
         "--no-stop"],
        input="", capture_output=True, text=True, env=env(tmp_path), timeout=60,
    )  # fmt: skip
    assert result.returncode != 0 and "not both" in result.stderr


def test_a_bad_checkpoint_is_one_line(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "minigpt", "chat", "-c", str(tmp_path / "nothing")],
        input="", capture_output=True, text=True, env=env(tmp_path), timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1


# ---------------------------------------------------------------------------------
# minigpt sample


def sample(checkpoint: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "minigpt", "sample", "-c", str(checkpoint), *args],
        capture_output=True, text=True, env=env(tmp_path), timeout=120,
    )  # fmt: skip


def test_sample_json_has_text_ids_logprobs_and_settings(checkpoint: Path, tmp_path: Path) -> None:
    result = sample(checkpoint, tmp_path, "--json", "-n", "20", "--num-samples", "3", "-p", "Hi")
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["settings"]["num_samples"] == 3 and out["seed"] == 1337
    assert len(out["samples"]) == 3
    tok = CharTokenizer.from_text(TEXT)
    for s in out["samples"]:
        assert tok.decode(s["token_ids"]) == s["text"]
        assert len(s["logprobs"]) == len(s["token_ids"]) == 20
        assert all(lp <= 0 for lp in s["logprobs"])
    assert "tokens/s" in result.stderr and "first token after" in result.stderr
    again = json.loads(
        sample(checkpoint, tmp_path, "--json", "-n", "20", "--num-samples", "3", "-p", "Hi").stdout
    )
    assert [s["text"] for s in again["samples"]] == [s["text"] for s in out["samples"]]


def test_sample_stop_strings_and_prompt_file(checkpoint: Path, tmp_path: Path) -> None:
    prompt = tmp_path / "prompt.txt"
    prompt.write_bytes("\ufeffHello".encode())  # a BOM is dropped
    result = sample(checkpoint, tmp_path, "--prompt-file", str(prompt), "--json", "-n", "200",
                    "--temperature", "2", "--stop", "e", "--stop", "a")  # fmt: skip
    out = json.loads(result.stdout)
    assert out["prompt"] == "Hello"
    text = out["samples"][0]["text"]
    assert "e" not in text and "a" not in text and out["samples"][0]["stopped"]


def test_sample_show_probs_lists_every_token(checkpoint: Path, tmp_path: Path) -> None:
    result = sample(checkpoint, tmp_path, "--show-probs", "-n", "8", "-p", "Hi")
    assert result.returncode == 0, result.stderr
    rows = [line for line in result.stdout.splitlines() if line.strip()[:1].isdigit()]
    assert len(rows) == 8


def test_sample_edges_zero_tokens_empty_and_long_prompts(checkpoint: Path, tmp_path: Path) -> None:
    none = sample(checkpoint, tmp_path, "-n", "0", "-p", "Hi")
    assert none.returncode == 0 and "no tokens generated" in none.stderr
    empty = sample(checkpoint, tmp_path, "-n", "5", "--json")
    assert empty.returncode == 0 and len(json.loads(empty.stdout)["samples"][0]["token_ids"]) == 5
    long = sample(checkpoint, tmp_path, "-n", "5", "-p", "abc " * 100)
    assert long.returncode == 0 and "the model sees only the last 64" in long.stderr


def test_num_samples_stop_each_on_their_own(checkpoint: Path, tmp_path: Path) -> None:
    result = sample(checkpoint, tmp_path, "--json", "--num-samples", "4", "-n", "100",
                    "--temperature", "2", "--stop", "a")  # fmt: skip
    out = json.loads(result.stdout)
    assert all("a" not in s["text"] for s in out["samples"])
    lengths = {len(s["token_ids"]) for s in out["samples"]}
    assert len(lengths) > 1  # each row stopped at its own time


def test_a_checkpoint_path_with_brackets_prints_as_is(checkpoint: Path, tmp_path: Path) -> None:
    odd = tmp_path / "[draft] run [/x]"
    shutil.copytree(checkpoint.parent, odd)
    result = sample(odd, tmp_path, "-n", "3")
    assert result.returncode == 0, result.stderr
    assert "[draft] run [/x]" in result.stderr


@pytest.mark.parametrize(
    "args, named",
    [(["--temperature", "nan"], "temperature"), (["--top-p", "0"], "top_p"),
     (["--min-p", "2"], "min_p"), (["-p", "\u00e9"], "not in the char"),
     (["--prompt-file", "missing.txt"], "cannot read the prompt file"),
     (["--stop", ""], "stop string"), (["--seed", str(2**64)], "seed"),
     (["--presence-penalty", "1e39"], "presence_penalty")],
)  # fmt: skip
def test_sample_bad_options_are_one_line(
    checkpoint: Path, tmp_path: Path, args: list[str], named: str
) -> None:
    result = sample(checkpoint, tmp_path, *args)
    assert result.returncode != 0
    assert named in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
