"""`minigpt export hf`: a minigpt snapshot as a Hugging Face model directory that
`AutoModelForCausalLM.from_pretrained` and `AutoTokenizer.from_pretrained` load with no
custom code, giving the same logits and the same token ids.

The architecture follows the model's shape:

- rope + rmsnorm + swiglu without biases: `LlamaForCausalLM` (tied or untied,
  grouped-query attention as trained);
- learned or sinusoidal positions + layernorm + gelu: `GPT2LMHeadModel`. A model
  without biases gets zero biases; sinusoidal positions are written as GPT-2's
  position table, and the sqrt(n_embd) that minigpt scales the token embedding by
  before adding them goes into the embedding matrix, which only an untied model can
  take (the unembedding would be scaled too).

Anything else is refused in one line naming the setting. The directory is written
beside its destination and renamed into place; an existing one is replaced only with
`force`, and only if it holds nothing but the files an export writes.
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from minigpt.checkpoint import read_snapshot
from minigpt.config import GPTConfig, SampleConfig
from minigpt.convert.common import minigpt_shapes
from minigpt.convert.gpt2 import config_to_gpt2, state_dict_to_gpt2
from minigpt.convert.llama import config_to_llama, state_dict_to_llama
from minigpt.errors import ConfigError
from minigpt.fileio import make_temp_dir, swap_dir_into_place
from minigpt.positional import sinusoidal_table
from minigpt.presets import GPT2_STYLE, MODERN
from minigpt.tensorfile import write_safetensors
from minigpt.tokenizer.encodings import Tokenizer
from minigpt.tokenizer.hf_export import tokenizer_config, tokenizer_json

FILES = ("config.json", "model.safetensors", "generation_config.json", "tokenizer.json",
         "tokenizer_config.json", "README.md")  # fmt: skip
ARCHITECTURES = {"gpt2": ("GPT2LMHeadModel", "gpt2"), "llama": ("LlamaForCausalLM", "llama")}


@dataclass(frozen=True)
class Exported:
    """What `export_hf` wrote: the directory, its architecture and the model's shape."""

    out: Path
    architecture: str  # "gpt2" or "llama"
    config: GPTConfig
    tokenizer: Tokenizer


def hf_architecture(cfg: GPTConfig) -> str:
    """ "llama" or "gpt2" for a shape transformers represents exactly, else a refusal."""
    if cfg.pos_encoding == "rope":
        for name, value in MODERN.items():
            if getattr(cfg, name) != value:
                raise ConfigError(
                    f"a RoPE model exports as Llama, which needs {name}={value!r}, but this "
                    f"model has {name}={getattr(cfg, name)!r}; no transformers architecture "
                    "has that combination"
                )
        return "llama"
    for name in ("norm", "mlp"):
        if getattr(cfg, name) != GPT2_STYLE[name]:
            raise ConfigError(
                f"a model with {cfg.pos_encoding} positions exports as GPT-2, which needs "
                f"{name}={GPT2_STYLE[name]!r}, but this model has {name}={getattr(cfg, name)!r}"
            )
    if cfg.kv_heads != cfg.n_head:
        raise ConfigError(
            f"GPT-2 has no grouped-query attention, but this model has n_kv_head="
            f"{cfg.n_kv_head} for {cfg.n_head} heads; only RoPE models export with it"
        )
    if cfg.pos_encoding == "sinusoidal" and cfg.tie_embeddings:
        raise ConfigError(
            "a sinusoidal model scales its token embedding by sqrt(n_embd) before adding "
            "the positions, which GPT-2 cannot do when that matrix is also the unembedding "
            "(tied); export a model trained with --no-tie"
        )
    return "gpt2"


def hf_weights(
    cfg: GPTConfig, weights: dict[str, torch.Tensor], arch: str
) -> dict[str, torch.Tensor]:
    """The transformers state dict of a snapshot's weights (a tied head stored once)."""
    if arch == "llama":
        out = state_dict_to_llama(weights, cfg)
    else:
        full = replace(cfg, bias=True, pos_encoding="learned")
        weights = dict(weights)
        if cfg.pos_encoding == "sinusoidal":  # untied (hf_architecture checked)
            weights["wte.weight"] = weights["wte.weight"] * math.sqrt(cfg.n_embd)
            weights["wpe.weight"] = sinusoidal_table(cfg.block_size, cfg.n_embd)
        for name, shape in minigpt_shapes(full).items():
            if name not in weights and not (name == "lm_head.weight" and cfg.tie_embeddings):
                weights[name] = torch.zeros(shape)  # a bias the model does not have
        out = state_dict_to_gpt2(weights, full)
    if cfg.tie_embeddings:
        del out["lm_head.weight"]  # the embedding's own tensor; transformers ties it back
    return out


def hf_config(cfg: GPTConfig, arch: str, tok: Tokenizer) -> dict[str, Any]:
    """config.json: transformers' settings for `cfg`, with the end-of-text id."""
    to_hf = config_to_llama if arch == "llama" else config_to_gpt2
    hf_cfg = replace(cfg, bias=True, pos_encoding="learned") if arch == "gpt2" else cfg
    class_name, model_type = ARCHITECTURES[arch]
    settings = to_hf(hf_cfg, eos_token_id=tok.eot_id)
    return {"architectures": [class_name], "model_type": model_type, **settings}


def generation_config(tok: Tokenizer) -> dict[str, Any]:
    """generation_config.json: minigpt's sampling defaults in transformers' terms (0
    turns top-k off, 1.0 top-p)."""
    s = SampleConfig()
    return {"do_sample": True, "temperature": s.temperature, "top_k": s.top_k or 0,
            "top_p": s.top_p or 1.0, "repetition_penalty": s.repetition_penalty,
            "eos_token_id": tok.eot_id}  # fmt: skip


def model_card(meta: dict[str, Any], arch: str, cfg: GPTConfig, tok: Tokenizer) -> str:
    """README.md: what the model is and how it was trained."""
    class_name = ARCHITECTURES[arch][0]
    lines = [
        "---", "library_name: transformers", "tags: [minigpt]", "---", "",
        "# A minigpt model", "",
        f"A {class_name} exported by `minigpt export hf`: {cfg.n_layer} layers, "
        f"{cfg.n_head} heads, width {cfg.n_embd}, context {cfg.block_size}, "
        f"{cfg.pos_encoding} positions, vocabulary {cfg.vocab_size} ({tok.kind} tokenizer).",
        "",
    ]  # fmt: skip
    trained = [f"- steps: {meta.get('step', 0)}"]
    if isinstance(meta.get("val_bpb"), float):
        trained.append(f"- validation bits per byte: {meta['val_bpb']:.4f}")
    dataset = meta.get("dataset")
    if isinstance(dataset, dict):
        trained.append(f"- data: {dataset.get('source')} (sha256 {dataset.get('source_sha256')})")
    source = meta.get("imported_from") or meta.get("init_from")
    if isinstance(source, dict):
        trained.append(f"- started from: {source.get('source')}")
    lines += ["## Training", "", *trained, "", "## Use", "", "```python",
              "from transformers import AutoModelForCausalLM, AutoTokenizer",
              "tok = AutoTokenizer.from_pretrained(PATH)",
              "model = AutoModelForCausalLM.from_pretrained(PATH)",
              'ids = tok("Hello", return_tensors="pt").input_ids',
              "print(tok.decode(model.generate(ids, max_new_tokens=50)[0]))",
              "```", "", "PATH: this directory.", ""]  # fmt: skip
    return "\n".join(lines)


def check_destination(out: Path, force: bool) -> None:
    """Refuse an existing destination unless `force` and it is an earlier export."""
    if not out.exists() and not out.is_symlink():
        return
    if not force:
        raise ConfigError(f"{out} already exists; choose another --out, or add --force")
    if out.is_symlink() or not out.is_dir():
        raise ConfigError(f"{out} is not a directory; choose another --out")
    others = sorted(p.name for p in out.iterdir() if p.name not in FILES)
    if others:
        raise ConfigError(
            f"{out} holds files an export does not write ({', '.join(others[:3])}), so "
            "--force will not replace it; choose another --out"
        )


def export_hf(snapshot: Path, out: Path, force: bool = False) -> Exported:
    """Write the snapshot (or run) at `snapshot` as a transformers model directory."""
    check_destination(out, force)
    snap = read_snapshot(snapshot)
    cfg, tok = snap.config, snap.tokenizer
    arch = hf_architecture(cfg)
    tensors = hf_weights(cfg, snap.weights, arch)
    documents = {
        "config.json": hf_config(cfg, arch, tok),
        "generation_config.json": generation_config(tok),
        "tokenizer.json": tokenizer_json(tok),
        "tokenizer_config.json": tokenizer_config(tok, cfg.block_size),
    }
    temp = make_temp_dir(out)
    try:
        write_safetensors(temp / "model.safetensors", tensors, {"format": "pt"})
        for name, document in documents.items():
            text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
            (temp / name).write_text(text, encoding="utf-8")
        (temp / "README.md").write_text(model_card(snap.meta, arch, cfg, tok), encoding="utf-8")
        check_destination(out, force)  # again: something may have appeared meanwhile
        swap_dir_into_place(temp, out)
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    return Exported(out, arch, cfg, tok)
