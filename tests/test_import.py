"""`minigpt import`: tiny random GPT2LMHeadModel and LlamaForCausalLM models saved by
transformers itself (safetensors), imported through the real CLI from a directory and
from a prepared Hugging Face hub cache offline; the imported checkpoint gives the same
logits and the same greedy continuation; every unsupported input is one line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import transformers
from tokenizers import Regex, pre_tokenizers

from minigpt.checkpoint import load_checkpoint
from minigpt.config import SampleConfig
from minigpt.generation.generate import generate
from tests.test_parity import randomize
from tests.test_tokenizer_hf import LLAMA3_PATTERN, gpt2_merges, train, write

QUIET = dict(bos_token_id=None, eos_token_id=None, pad_token_id=None)
NEW_TOKENS = 8


pytestmark = pytest.mark.usefixtures("quiet_transformers")


def gpt2_tokenizer_files(directory: Path) -> None:
    """GPT-2's own vocab.json and merges.txt, written from tiktoken's gpt2 encoding."""
    from minigpt.tokenizer.encodings import TiktokenTokenizer
    from minigpt.tokenizer.hf_ranks import byte_level_decoder

    gpt2 = TiktokenTokenizer("gpt2")
    ranks = {gpt2.token_bytes(i): i for i in range(50256)}
    spell = {b: c for c, b in byte_level_decoder().items()}

    def s(token: bytes) -> str:
        return "".join(spell[b] for b in token)

    vocab = {s(t): i for t, i in ranks.items()} | {"<|endoftext|>": 50256}
    (directory / "vocab.json").write_text(json.dumps(vocab))
    lines = [f"{s(a)} {s(b)}" for a, b in gpt2_merges(ranks)]
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(lines) + "\n")


def save_gpt2(directory: Path, tie: bool = True) -> transformers.PreTrainedModel:
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=50257, n_positions=64, n_embd=32, n_layer=2, n_head=4,
        tie_word_embeddings=tie, attn_implementation="eager", **QUIET,
    )  # fmt: skip
    model = transformers.GPT2LMHeadModel(config).eval()
    randomize(model, seed=1)
    model.save_pretrained(directory, safe_serialization=True)
    gpt2_tokenizer_files(directory)
    return model


def save_llama(
    directory: Path, tie: bool = False, kv_heads: int = 4
) -> transformers.PreTrainedModel:
    pre = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    hf_tok = train(pre, ["<|begin_of_text|>", "<|end_of_text|>"])
    write(directory, hf_tok, {"eos_token": "<|end_of_text|>"})
    torch.manual_seed(0)
    config = transformers.LlamaConfig(
        vocab_size=hf_tok.get_vocab_size(), hidden_size=32, intermediate_size=64,
        num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=kv_heads,
        max_position_embeddings=64,
        rope_theta=5000.0, tie_word_embeddings=tie, attn_implementation="eager", **QUIET,
    )  # fmt: skip
    model = transformers.LlamaForCausalLM(config).eval()
    randomize(model, seed=2)
    model.save_pretrained(directory, safe_serialization=True)
    return model


SAVERS = {
    "gpt2": save_gpt2,
    "llama": save_llama,
    "llama-gqa-tied": lambda d: save_llama(d, tie=True, kv_heads=2),
}


def minigpt_import(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "minigpt", "import", *args], capture_output=True, text=True,
        env={**os.environ, **(env or {})}, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module", params=list(SAVERS))
def saved(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory):
    directory = tmp_path_factory.mktemp(request.param) / "model"
    directory.mkdir()
    return request.param, directory, SAVERS[request.param](directory)


def assert_same_model(snapshot: Path, theirs: transformers.PreTrainedModel) -> None:
    """Same logits on random ids, and the same greedy continuation."""
    ckpt = load_checkpoint(snapshot)
    ids = torch.randint(1000, (1, 24), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(ckpt.model(ids), theirs(ids).logits)
        expected = theirs.generate(ids, max_new_tokens=NEW_TOKENS, do_sample=False)[0, 24:]
    config = SampleConfig(temperature=0.0, max_new_tokens=NEW_TOKENS, ignore_eos=True)
    ours = [int(step.token[0]) for step in generate(ckpt.model, ids, config)]
    assert ours == expected.tolist()


def test_an_imported_directory_gives_the_same_logits_and_continuation(saved, tmp_path) -> None:
    arch, directory, theirs = saved
    done = minigpt_import(str(directory), "--name", "mine", "--checkpoints", str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert f"as {tmp_path / 'mine'}" in done.stdout
    assert_same_model(tmp_path / "mine" / "latest", theirs)
    ckpt = load_checkpoint(tmp_path / "mine")
    assert ckpt.tokenizer.kind == ("tiktoken" if arch == "gpt2" else "hf-bpe")
    assert ckpt.meta["imported_from"]["architecture"] == arch.split("-")[0]
    again = minigpt_import(str(directory), "--name", "mine", "--checkpoints", str(tmp_path))
    assert again.returncode != 0 and "already exists" in again.stderr
    assert load_checkpoint(tmp_path / "mine").meta == ckpt.meta  # nothing overwritten


def test_a_hub_name_is_read_from_the_cache_offline(saved, tmp_path) -> None:
    """A prepared hub cache (models--org--name/snapshots/REV, refs/main), HF_HUB_OFFLINE=1."""
    arch, directory, theirs = saved
    repo = tmp_path / "hub" / f"models--tiny--{arch}"  # the hub's cache layout
    revision = "0" * 40
    shutil.copytree(directory, repo / "snapshots" / revision)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(revision)
    env = {"HF_HUB_CACHE": str(tmp_path / "hub"), "HF_HUB_OFFLINE": "1"}
    done = minigpt_import(f"tiny/{arch}", "--checkpoints", str(tmp_path / "runs"), env=env)
    assert done.returncode == 0, done.stderr
    assert_same_model(tmp_path / "runs" / arch / "latest", theirs)
    missing = minigpt_import("tiny/absent", "--checkpoints", str(tmp_path / "runs"), env=env)
    assert missing.returncode != 0 and "not in the Hugging Face cache" in missing.stderr


def refused(directory: Path, tmp_path: Path, *words: str) -> None:
    done = minigpt_import(str(directory), "--checkpoints", str(tmp_path / "runs"))
    assert done.returncode != 0 and "Traceback" not in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for word in words:
        assert word in done.stderr, done.stderr
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


@pytest.fixture(scope="module")
def llama_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("llama") / "model"
    directory.mkdir()
    save_llama(directory)
    return directory


def variant(llama_dir: Path, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(llama_dir, copy)
    return copy


def edit_config(directory: Path, **changes) -> None:
    config = json.loads((directory / "config.json").read_text())
    (directory / "config.json").write_text(json.dumps(config | changes))


def test_pickle_weights_are_refused_unopened(llama_dir: Path, tmp_path: Path) -> None:
    d = variant(llama_dir, tmp_path, "pickled")
    (d / "model.safetensors").unlink()
    (d / "pytorch_model.bin").write_bytes(b"\x80\x04 would run code if unpickled")
    refused(d, tmp_path, "pytorch_model.bin", "pickle", "save_pretrained")


def test_truncated_and_mismatched_weights_are_refused(llama_dir: Path, tmp_path: Path) -> None:
    d = variant(llama_dir, tmp_path, "truncated")
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[: len(data) // 2])
    refused(d, tmp_path, "model.safetensors")
    d = variant(llama_dir, tmp_path, "mismatched")
    edit_config(d, intermediate_size=48)
    refused(d, tmp_path, "shape")


@pytest.mark.parametrize(
    ("change", "words"),
    [
        ({"architectures": ["MistralForCausalLM"], "model_type": "mistral"}, ["Mistral"]),
        ({"rope_scaling": {"rope_type": "linear", "factor": 2.0}}, ["rope"]),
        ({"attention_bias": True}, ["attention_bias"]),
        ({"hidden_act": "gelu"}, ["hidden_act"]),
    ],
)
def test_settings_minigpt_cannot_represent_are_named(llama_dir, tmp_path, change, words) -> None:
    d = variant(llama_dir, tmp_path, "changed")
    edit_config(d, **change)
    refused(d, tmp_path, *words)


def test_a_tokenizer_that_cannot_be_reproduced_is_refused(llama_dir, tmp_path) -> None:
    d = variant(llama_dir, tmp_path, "unigram")
    spec = json.loads((d / "tokenizer.json").read_text())
    spec["model"] = {"type": "Unigram", "unk_id": 0, "vocab": [["<unk>", 0.0], ["a", -1.0]]}
    (d / "tokenizer.json").write_text(json.dumps(spec))
    refused(d, tmp_path, "Unigram")


def test_not_a_model_is_one_line(tmp_path: Path) -> None:
    refused(tmp_path / "nowhere", tmp_path, "neither a directory nor a hub name")
    (tmp_path / "empty").mkdir()
    refused(tmp_path / "empty", tmp_path, "config.json")
