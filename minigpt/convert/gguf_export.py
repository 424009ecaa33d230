"""`minigpt export gguf`: a minigpt snapshot as one GGUF file for llama.cpp and the tools
built on it (llama-server, ollama, LM Studio), written with the `gguf` package (the
`gguf` extra).

The architecture is the one `export hf` chooses (`hf_export.hf_architecture`), and the
tensors start from the same transformers layout (zero biases, the sinusoidal table),
renamed to llama.cpp's names:

- llama: the query and key rows are permuted. transformers rotates channel i with
  channel i + head_size/2 (rotate_half); llama.cpp's Llama graph rotates adjacent
  channels (2i, 2i + 1), so each head's rows are interleaved, as llama.cpp's own
  `convert_hf_to_gguf.py` does.
- gpt2: GPT-2's Conv1D matrices are (in, out); GGUF holds (out, in), as nn.Linear.

The tokenizer is GGUF's `gpt2` byte-level BPE: tokens spelled as GPT-2 spells bytes,
their merges (the canonical ones, `tokenizer.hf_export`), special tokens as control
tokens. llama.cpp knows pre-tokenizers by name only, so a tokenizer is exported when
its pattern is GPT-2's; a char tokenizer has no byte-level form. Matrices are written
in f32, f16 or q8_0 (blocks of 32 values: a matrix whose rows are not whole blocks is
stored in f16, as llama.cpp's converter does); norms, biases and vectors stay f32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from minigpt.checkpoint import read_snapshot
from minigpt.config import GPTConfig
from minigpt.convert.hf_export import hf_architecture, hf_weights
from minigpt.errors import ConfigError
from minigpt.fileio import fsync_path, remove_stale_temps, temp_prefix
from minigpt.tokenizer.encodings import GPT2_PATTERN, Tokenizer
from minigpt.tokenizer.hf_export import (
    ByteBPE,
    Merge,
    byte_bpe,
    byte_level_speller,
    canonical_merges,
)

DTYPES = ("f32", "f16", "q8_0")
Q8_BLOCK = 32  # values per q8_0 block: a matrix's rows must be a multiple of it
# Spellings of GPT-2's pre-tokenizer: minigpt's, and tiktoken's gpt2/r50k_base.
GPT2_PATTERNS = (
    GPT2_PATTERN,
    r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s""",
)
LLAMA_NAMES = {
    "model.embed_tokens.weight": "token_embd.weight",
    "model.norm.weight": "output_norm.weight",
    "lm_head.weight": "output.weight",
    "input_layernorm": "attn_norm",
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "post_attention_layernorm": "ffn_norm",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}
GPT2_NAMES = {
    "transformer.wte.weight": "token_embd.weight",
    "transformer.wpe.weight": "position_embd.weight",
    "transformer.ln_f.weight": "output_norm.weight",
    "transformer.ln_f.bias": "output_norm.bias",
    "lm_head.weight": "output.weight",
    "ln_1": "attn_norm",
    "attn.c_attn": "attn_qkv",
    "attn.c_proj": "attn_output",
    "ln_2": "ffn_norm",
    "mlp.c_fc": "ffn_up",
    "mlp.c_proj": "ffn_down",
}
CONV1D = ("attn.c_attn.weight", "attn.c_proj.weight", "mlp.c_fc.weight", "mlp.c_proj.weight")


@dataclass(frozen=True)
class GGUFExported:
    out: Path
    architecture: str
    dtype: str
    config: GPTConfig
    tokenizer: Tokenizer


def _gguf():  # noqa: ANN202 - the module, imported only when exporting
    try:
        import gguf
    except ImportError as e:
        raise ConfigError('export gguf needs the gguf package: pip install "minigpt[gguf]"') from e
    return gguf


def gguf_tensors(cfg: GPTConfig, weights: dict[str, torch.Tensor], arch: str) -> dict:
    """llama.cpp's tensor names and layouts of a snapshot's weights, float32."""
    hf = hf_weights(cfg, weights, arch)
    if arch == "gpt2":
        hf.setdefault("lm_head.weight", hf["transformer.wte.weight"])  # llama.cpp's output
    out: dict[str, torch.Tensor] = {}
    for name, t in hf.items():
        gguf_name = _rename(name, arch)
        if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = cfg.n_head if "q_proj" in name else cfg.kv_heads
            t = _interleave_rope_rows(t, heads)
        if arch == "gpt2" and name.endswith(CONV1D):
            t = t.t()
        out[gguf_name] = t.contiguous().float()
    return out


def _rename(name: str, arch: str) -> str:
    names = LLAMA_NAMES if arch == "llama" else GPT2_NAMES
    if name in names:
        return names[name]
    prefix = "model.layers." if arch == "llama" else "transformer.h."
    layer, rest = name.removeprefix(prefix).split(".", 1)
    module, kind = rest.rsplit(".", 1)
    return f"blk.{layer}.{names[module]}.{kind}"


def _interleave_rope_rows(w: torch.Tensor, heads: int) -> torch.Tensor:
    """Each head's rows from halves (i, i + d/2) to adjacent pairs (2i, 2i + 1)."""
    rows = w.shape[0]
    return w.reshape(heads, 2, rows // heads // 2, -1).transpose(1, 2).reshape(w.shape)


def gguf_vocabulary(tok: Tokenizer, dtype: str) -> tuple[ByteBPE, list[Merge]]:
    """The tokenizer's byte-level BPE and its merges; refused, before anything is
    written, what llama.cpp cannot load or run alike."""
    if dtype not in DTYPES:
        raise ConfigError(f"--dtype {dtype!r} is not one of {', '.join(DTYPES)}")
    if tok.kind == "char":
        raise ConfigError(
            "a char tokenizer has no GGUF form (llama.cpp's tokenizers work on bytes); "
            "export a model trained with --tokenizer bpe or gpt2, or use export hf"
        )
    bpe = byte_bpe(tok)
    if bpe.pattern not in GPT2_PATTERNS:
        raise ConfigError(
            f"llama.cpp knows pre-tokenizers by name only, and this tokenizer's pattern "
            f"{bpe.pattern!r:.60} is not GPT-2's; use export hf for it"
        )
    merges, unbuilt = canonical_merges(bpe.ranked)
    if unbuilt:
        raise ConfigError(
            "this tokenizer has tokens no merge builds, which llama.cpp's GPT-2 "
            "tokenizer never produces; use export hf for it"
        )
    return bpe, merges


def _add_tokenizer(writer, tok: Tokenizer, bpe: ByteBPE, merges: list[Merge]) -> None:  # noqa: ANN001 - a gguf.GGUFWriter
    gguf = _gguf()
    s = byte_level_speller()
    tokens = [f"[UNUSED_{i}]" for i in range(tok.vocab_size)]
    types = [gguf.TokenType.UNUSED] * tok.vocab_size
    for token, id in [*bpe.ranked, *bpe.decode_only]:
        tokens[id], types[id] = s(token), gguf.TokenType.NORMAL
    for name, id in bpe.special.items():
        tokens[id], types[id] = name, gguf.TokenType.CONTROL
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([f"{s(a)} {s(b)}" for a, b in merges])
    if tok.eot_id is not None:
        writer.add_eos_token_id(tok.eot_id)
        writer.add_bos_token_id(tok.eot_id)
    writer.add_add_bos_token(False)
    writer.add_add_eos_token(False)


def _add_settings(writer, cfg: GPTConfig, arch: str) -> None:  # noqa: ANN001
    writer.add_context_length(cfg.block_size)
    writer.add_embedding_length(cfg.n_embd)
    writer.add_block_count(cfg.n_layer)
    writer.add_feed_forward_length(cfg.hidden_size)
    writer.add_head_count(cfg.n_head)
    if arch == "llama":
        writer.add_head_count_kv(cfg.kv_heads)
        writer.add_rope_freq_base(cfg.rope_theta)
        writer.add_rope_dimension_count(cfg.head_size)
        writer.add_layer_norm_rms_eps(cfg.norm_eps)
        writer.add_vocab_size(cfg.vocab_size)
    else:
        writer.add_layer_norm_eps(cfg.norm_eps)


def _data(t: torch.Tensor, dtype: str) -> tuple[np.ndarray, object]:
    """The array to store and its GGML type: matrices in `dtype`, vectors in f32."""
    gguf = _gguf()
    a = t.numpy()
    if t.dim() == 1 or dtype == "f32":
        return a, gguf.GGMLQuantizationType.F32
    if dtype == "f16":
        return a.astype(np.float16), gguf.GGMLQuantizationType.F16
    if a.shape[-1] % Q8_BLOCK:  # q8_0 rows are whole blocks: this matrix stays f16
        return a.astype(np.float16), gguf.GGMLQuantizationType.F16
    q8 = gguf.GGMLQuantizationType.Q8_0
    return gguf.quants.quantize(a, q8), q8


def export_gguf(snapshot: Path, out: Path, dtype: str = "f32", force: bool = False) -> GGUFExported:
    """Write the snapshot (or run) at `snapshot` as the GGUF file `out`."""
    if (out.exists() or out.is_symlink()) and not force:
        raise ConfigError(f"{out} already exists; choose another --out, or add --force")
    if out.is_dir():
        raise ConfigError(f"{out} is a directory; give a file name such as model.gguf")
    gguf = _gguf()
    snap = read_snapshot(snapshot)
    cfg, tok = snap.config, snap.tokenizer
    arch = hf_architecture(cfg)
    bpe, merges = gguf_vocabulary(tok, dtype)
    tensors = gguf_tensors(cfg, snap.weights, arch)
    out.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out)
    temp = out.with_name(f"{temp_prefix(out)}gguf")
    try:
        writer = gguf.GGUFWriter(temp, arch)
        writer.add_name(f"minigpt {out.stem}")
        writer.add_file_type({"f32": 0, "f16": 1, "q8_0": 7}[dtype])
        _add_settings(writer, cfg, arch)
        _add_tokenizer(writer, tok, bpe, merges)
        for name, t in tensors.items():
            data, kind = _data(t, dtype)
            writer.add_tensor(name, data, raw_dtype=kind)
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        os.replace(temp, out)
        fsync_path(out.parent)
    finally:
        temp.unlink(missing_ok=True)
    return GGUFExported(out, arch, dtype, cfg, tok)
