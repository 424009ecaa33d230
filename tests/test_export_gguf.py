"""`minigpt export gguf` read by llama.cpp itself: node-llama-cpp 3.21.1 (prebuilt
llama.cpp for the CPU, installed with `npm ci` in tests/llama_cpp from its lock file,
as .ci/run does) loads each f32 export of random tiny models, tokenizes a corpus of
English, code, Korean, Japanese, emoji and whitespace runs to minigpt's ids, and
continues a prompt greedily with minigpt's tokens. f16 and q8_0 exports load and
continue. These tests skip only where `node` is missing; without tests/llama_cpp's
node_modules they fail."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from minigpt.checkpoint import load_checkpoint
from minigpt.config import SampleConfig
from minigpt.convert.gguf_export import export_gguf
from minigpt.errors import ConfigError
from minigpt.generation.generate import generate
from minigpt.tokenizer.encodings import BPETokenizer
from tests.test_export_hf import SHAPES, minigpt, snapshot, tokenizer
from tests.test_tokenizer_hf import STRINGS

LLAMA_CPP = Path(__file__).parent / "llama_cpp"
NEW_TOKENS = 16
PROMPT = "Hello, 안녕 😀\n  x = 1; ROMEO: what light"
pytestmark = pytest.mark.skipif(shutil.which("node") is None, reason="node is not installed")


def llama_cpp(model: Path, texts: list[str], prompt: list[int], tmp_path: Path) -> dict:
    """llama.cpp's ids of each text and its greedy continuation of `prompt`."""
    assert (LLAMA_CPP / "node_modules" / "node-llama-cpp").is_dir(), (
        "run `npm ci --prefix tests/llama_cpp` first (.ci/run does)"
    )
    request = tmp_path / "request.json"
    request.write_text(json.dumps({"texts": texts, "prompts": [prompt], "new_tokens": NEW_TOKENS}))
    done = subprocess.run(["node", LLAMA_CPP / "greedy.mjs", model, request],
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    got = json.loads(done.stdout)
    return {"ids": got["ids"], "continuation": got["continuations"][0]}


def greedy(snap: Path, prompt: list[int]) -> list[int]:
    model = load_checkpoint(snap).model
    config = SampleConfig(temperature=0.0, max_new_tokens=NEW_TOKENS, ignore_eos=True)
    return [int(s.token[0]) for s in generate(model, torch.tensor([prompt]), config)]


def assert_llama_cpp_agrees(snap: Path, model: Path, tmp_path: Path) -> None:
    tok = load_checkpoint(snap).tokenizer
    prompt = tok.encode(PROMPT)
    got = llama_cpp(model, STRINGS, prompt, tmp_path)
    wrong = [(s, i) for s, i in zip(STRINGS, got["ids"], strict=True) if i != tok.encode(s)]
    assert not wrong, f"{len(wrong)} of {len(STRINGS)} strings differ, first {wrong[0]}"
    assert got["continuation"] == greedy(snap, prompt)


@pytest.mark.parametrize("shape", list(SHAPES))
def test_llama_cpp_runs_every_shape_as_minigpt_does(shape, tmp_path) -> None:
    snap = snapshot(tmp_path / "snap", SHAPES[shape], tokenizer("bpe"))
    model = tmp_path / "model.gguf"
    if shape == "llama":  # through the command once
        done = minigpt("export", "gguf", snap, "--out", model)
        assert done.returncode == 0 and "llama" in done.stdout, done.stderr
    else:
        export_gguf(snap, model)
    assert_llama_cpp_agrees(snap, model, tmp_path)


def test_gpt2s_vocabulary_tokenizes_alike_in_llama_cpp(tmp_path) -> None:
    snap = snapshot(tmp_path / "snap", SHAPES["gpt2"], tokenizer("gpt2"))
    export_gguf(snap, tmp_path / "model.gguf")
    assert_llama_cpp_agrees(snap, tmp_path / "model.gguf", tmp_path)


@pytest.mark.parametrize("dtype", ["f16", "q8_0"])
def test_smaller_dtypes_load_and_continue(dtype, tmp_path) -> None:
    snap = snapshot(tmp_path / "snap", SHAPES["llama-untied-gqa"], tokenizer("bpe"))
    full, small = tmp_path / "f32.gguf", tmp_path / f"{dtype}.gguf"
    export_gguf(snap, full)
    export_gguf(snap, small, dtype)
    assert small.stat().st_size < full.stat().st_size * (0.6 if dtype == "f16" else 0.45)
    prompt = load_checkpoint(snap).tokenizer.encode(PROMPT)
    got = llama_cpp(small, [PROMPT], prompt, tmp_path)
    assert got["ids"] == [prompt]
    assert len(got["continuation"]) == NEW_TOKENS
    assert all(0 <= t < load_checkpoint(snap).config.vocab_size for t in got["continuation"])


def test_what_llama_cpp_cannot_read_is_refused(tmp_path) -> None:
    char = snapshot(tmp_path / "char", SHAPES["llama"], tokenizer("char"))
    with pytest.raises(ConfigError, match="char tokenizer"):
        export_gguf(char, tmp_path / "char.gguf")
    rope_layernorm = dict(SHAPES["llama"], norm="layernorm")
    odd = snapshot(tmp_path / "odd", rope_layernorm, tokenizer("bpe"))
    with pytest.raises(ConfigError, match="norm"):
        export_gguf(odd, tmp_path / "odd.gguf")
    gpt2_bpe = tokenizer("bpe").to_json()
    other = BPETokenizer({base64.b64decode(t): i for i, t in enumerate(gpt2_bpe["ranks"])},
                         pattern=r"\p{L}+|\p{N}|\s+|[^\s\p{L}\p{N}]+")  # fmt: skip
    odd_pattern = snapshot(tmp_path / "pattern", SHAPES["llama"], other)
    with pytest.raises(ConfigError, match="pre-tokenizers by name"):
        export_gguf(odd_pattern, tmp_path / "pattern.gguf")
    snap = snapshot(tmp_path / "snap", SHAPES["llama"], tokenizer("bpe"))
    with pytest.raises(ConfigError, match="--dtype"):
        export_gguf(snap, tmp_path / "x.gguf", "q4_0")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["char", "odd", "pattern", "snap"]
    existing = tmp_path / "mine.gguf"
    existing.write_text("mine")
    done = minigpt("export", "gguf", snap, "--out", existing)
    assert done.returncode == 1 and "--force" in done.stderr and "Traceback" not in done.stderr
    assert existing.read_text() == "mine"
    export_gguf(snap, existing, force=True)
    assert existing.read_bytes()[:4] == b"GGUF"
