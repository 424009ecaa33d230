"""`minigpt export hf`: random tiny minigpt models of every shape that exports, with
each tokenizer kind, loaded by real transformers (`AutoModelForCausalLM`,
`AutoTokenizer`): the same logits, the same ids on a corpus of English, code, Korean,
Japanese, emoji and whitespace runs, the same greedy tokens; `import` of an export
gives the same weights bit for bit; what cannot be exported is one line."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
import torch
import transformers

from minigpt.checkpoint import load_checkpoint, read_snapshot, save_snapshot
from minigpt.checkpoint.save import stored_tensors
from minigpt.config import GPTConfig, SampleConfig
from minigpt.convert.hf_export import export_hf
from minigpt.errors import ConfigError
from minigpt.generation.generate import generate
from minigpt.model import GPT
from minigpt.tokenizer.encodings import CharTokenizer, TiktokenTokenizer, Tokenizer
from minigpt.tokenizer.files import train_tokenizer
from tests.test_tokenizer_hf import STRINGS, TRAINING

pytestmark = pytest.mark.usefixtures("quiet_transformers")
NEW_TOKENS = 12
SHAPES = {
    "llama": dict(pos_encoding="rope", norm="rmsnorm", mlp="swiglu", bias=False),
    "llama-untied-gqa": dict(pos_encoding="rope", norm="rmsnorm", mlp="swiglu", bias=False,
                             tie_embeddings=False, n_head=4, n_kv_head=2),
    "gpt2": dict(pos_encoding="learned", norm="layernorm", mlp="gelu", bias=True),
    "gpt2-untied-no-bias": dict(pos_encoding="learned", norm="layernorm", mlp="gelu",
                                bias=False, tie_embeddings=False),
    "sinusoidal-untied": dict(pos_encoding="sinusoidal", norm="layernorm", mlp="gelu",
                              bias=True, tie_embeddings=False),
}  # fmt: skip


def tokenizer(kind: str) -> Tokenizer:
    if kind == "char":
        return CharTokenizer.from_text("".join(STRINGS))
    if kind == "bpe":
        return train_tokenizer("bpe", "".join(TRAINING), 700)
    return TiktokenTokenizer(kind)


def snapshot(directory: Path, shape: dict, tok: Tokenizer) -> Path:
    """A random model of `shape` (biases and norms random too, so nothing hides)."""
    cfg = GPTConfig(**{"vocab_size": tok.vocab_size, "block_size": 48, "n_layer": 2,
                       "n_head": 2, "n_embd": 32, **shape})  # fmt: skip
    torch.manual_seed(0)
    model = GPT(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    extra = {"step": 7, "val_bpb": 3.25}
    save_snapshot(directory, cfg, stored_tensors(model), tok, extra)
    return directory


def minigpt(*args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "minigpt", *map(str, args)],
                          capture_output=True, text=True, timeout=300)  # fmt: skip


def assert_same_as_transformers(snap: Path, out: Path) -> None:
    ckpt = load_checkpoint(snap)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    their_tok = transformers.AutoTokenizer.from_pretrained(out)
    ids = [their_tok(s, add_special_tokens=False).input_ids for s in STRINGS]
    wrong = [(s, i) for s, i in zip(STRINGS, ids, strict=True) if i != ckpt.tokenizer.encode(s)]
    assert not wrong, f"{len(wrong)} of {len(STRINGS)} strings differ, first {wrong[0]}"
    for s, i in zip(STRINGS[:200], ids, strict=False):
        assert their_tok.decode(i) == ckpt.tokenizer.decode(i) == s
    prompt = torch.tensor([ckpt.tokenizer.encode("Hello, 안녕 😀\n  x = 1")[:24]])
    with torch.no_grad():
        torch.testing.assert_close(theirs(prompt).logits, ckpt.model(prompt))
        expected = theirs.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False,
                                   min_new_tokens=NEW_TOKENS)[0, prompt.size(1):]  # fmt: skip
    config = SampleConfig(temperature=0.0, max_new_tokens=NEW_TOKENS, ignore_eos=True)
    ours = [int(step.token[0]) for step in generate(ckpt.model, prompt, config)]
    assert ours == expected.tolist()


@pytest.mark.parametrize("shape", list(SHAPES))
def test_every_shape_that_exports_gives_transformers_the_same_model(shape, tmp_path) -> None:
    snap = snapshot(tmp_path / "snap", SHAPES[shape], tokenizer("bpe"))
    arch = "LlamaForCausalLM" if shape.startswith("llama") else "GPT2LMHeadModel"
    if shape == "llama":  # through the command once
        done = minigpt("export", "hf", snap, "--out", tmp_path / "hf")
        assert done.returncode == 0 and arch in done.stdout, done.stderr
    else:
        export_hf(snap, tmp_path / "hf")
    assert json.loads((tmp_path / "hf" / "config.json").read_text())["architectures"] == [arch]
    assert_same_as_transformers(snap, tmp_path / "hf")


@pytest.mark.parametrize("kind", ["char", "gpt2", "r50k_base"])
def test_every_tokenizer_kind_exports_exactly(kind, tmp_path) -> None:
    snap = snapshot(tmp_path / "snap", SHAPES["llama"], tokenizer(kind))
    export_hf(snap, tmp_path / "hf")
    assert_same_as_transformers(snap, tmp_path / "hf")
    config = json.loads((tmp_path / "hf" / "generation_config.json").read_text())
    assert config["eos_token_id"] == load_checkpoint(snap).tokenizer.eot_id


@pytest.mark.parametrize("shape", ["llama-untied-gqa", "gpt2"])
def test_import_of_an_export_gives_the_same_weights(shape, tmp_path) -> None:
    snap = snapshot(tmp_path / "snap", SHAPES[shape], tokenizer("bpe"))
    export_hf(snap, tmp_path / "hf")
    done = minigpt("import", tmp_path / "hf", "--name", "back", "--checkpoints", tmp_path / "runs")
    assert done.returncode == 0, done.stderr
    before, after = read_snapshot(snap), read_snapshot(tmp_path / "runs" / "back")
    # The same shape; the hidden width comes back explicit (n_inner) where it was implied.
    assert after.config.hidden_size == before.config.hidden_size
    assert replace(after.config, n_inner=before.config.n_inner) == before.config
    assert after.weights.keys() == before.weights.keys()
    for name, t in before.weights.items():
        assert torch.equal(after.weights[name], t), name
    for s in STRINGS:
        assert after.tokenizer.encode(s) == before.tokenizer.encode(s)
    assert after.tokenizer.eot_id == before.tokenizer.eot_id
    # The imported tokenizer (hf-bpe: Hugging Face's own ids) exports exactly too.
    assert after.tokenizer.kind == "hf-bpe"
    export_hf(tmp_path / "runs" / "back", tmp_path / "hf-again")
    assert_same_as_transformers(tmp_path / "runs" / "back", tmp_path / "hf-again")


@pytest.mark.parametrize(
    "shape, words",
    [
        (dict(pos_encoding="rope", norm="layernorm", mlp="swiglu", bias=False), ("norm",)),
        (dict(pos_encoding="rope", norm="rmsnorm", mlp="swiglu", bias=True), ("bias",)),
        (dict(pos_encoding="learned", norm="rmsnorm", mlp="gelu"), ("GPT-2", "norm")),
        (dict(pos_encoding="learned", norm="layernorm", mlp="swiglu"), ("GPT-2", "mlp")),
        (dict(pos_encoding="sinusoidal", norm="layernorm", mlp="gelu"), ("--no-tie",)),
        (dict(pos_encoding="learned", norm="layernorm", mlp="gelu", n_head=4, n_kv_head=2),
         ("grouped-query",)),
    ],
)  # fmt: skip
def test_shapes_no_transformers_architecture_holds_are_refused(shape, words, tmp_path) -> None:
    snap = snapshot(tmp_path / "snap", shape, tokenizer("char"))
    with pytest.raises(ConfigError) as refusal:
        export_hf(snap, tmp_path / "hf")
    assert all(w in str(refusal.value) for w in words), refusal.value
    assert not (tmp_path / "hf").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["snap"]  # no temporary left behind


def test_an_existing_output_is_kept_without_force(tmp_path) -> None:
    snap = snapshot(tmp_path / "snap", SHAPES["llama"], tokenizer("char"))
    out = tmp_path / "hf"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    done = minigpt("export", "hf", snap, "--out", out)
    assert done.returncode == 1 and "--force" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    with pytest.raises(ConfigError, match="notes.txt"):
        export_hf(snap, out, force=True)
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    (out / "notes.txt").unlink()
    with pytest.raises(ConfigError, match="--force"):
        export_hf(snap, out)  # exists, even empty
    first = export_hf(snap, tmp_path / "again")
    stamp = (first.out / "model.safetensors").stat().st_mtime_ns
    export_hf(snap, first.out, force=True)
    assert (first.out / "model.safetensors").stat().st_mtime_ns != stamp
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "hf", "snap"]
