"""`minigpt export`: a trained model for other tools. `export hf` writes a Hugging Face
transformers directory, `export gguf` one GGUF file for llama.cpp
(`minigpt.convert.hf_export` and `gguf_export` do the work; this module names the
checkpoint and says what was made)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from minigpt.checkpoint import find_latest_checkpoint
from minigpt.cli.options import RootOpt
from minigpt.cli.settings import option
from minigpt.cli.terminal import stdout
from minigpt.convert.gguf_export import DTYPES, export_gguf
from minigpt.convert.hf_export import ARCHITECTURES, export_hf

RunArg = Annotated[
    Path | None,
    typer.Argument(help="A run or snapshot directory. \\[default: the newest]", metavar="RUN",
                   show_default=False),
]  # fmt: skip
ForceOpt = Annotated[bool, option("Replace an earlier export at --out.", "--force", default="off")]
HELP = "Write a trained model in another tool's format: hf (transformers), gguf (llama.cpp)."


def build_export_app() -> typer.Typer:
    """The `export` command group."""
    app = typer.Typer(name="export", help=HELP, no_args_is_help=True, add_completion=False)
    app.command("hf")(export_hf_command)
    app.command("gguf")(export_gguf_command)
    return app


def _out(what: str, metavar: str) -> typer.models.OptionInfo:
    """The required --out option."""
    return typer.Option("--out", "-o", help=f"{what} (it must not exist, unless --force).",
                        metavar=metavar, show_default=False)  # fmt: skip


def export_hf_command(
    out: Annotated[Path, _out("The directory to write", "DIR")],
    run: RunArg = None,
    force: ForceOpt = False,
    root: RootOpt = Path("checkpoints"),
) -> None:
    """A Hugging Face transformers model directory: AutoModelForCausalLM and AutoTokenizer
    load it with no custom code and give minigpt's logits and token ids.

    RoPE + RMSNorm + SwiGLU models become LlamaForCausalLM; learned or sinusoidal
    positions + LayerNorm + GELU become GPT2LMHeadModel. Every tokenizer kind exports.
    """
    done = export_hf(run or find_latest_checkpoint(root), out, force)
    c = done.config
    stdout().print(
        f"exported {ARCHITECTURES[done.architecture][0]} ({c.n_layer} layers, width "
        f"{c.n_embd}, vocabulary {c.vocab_size}, {done.tokenizer.kind} tokenizer) to {out}\n"
        f"try: python -c \"from transformers import pipeline; "
        f"print(pipeline('text-generation', '{out}')('Hello')[0]['generated_text'])\"",
        markup=False, soft_wrap=True,
    )  # fmt: skip


def export_gguf_command(
    out: Annotated[Path, _out("The file to write, such as model.gguf", "FILE")],
    run: RunArg = None,
    dtype: Annotated[
        str,
        option(
            f"How matrices are stored: {', '.join(DTYPES)} (norms and biases stay f32).",
            "--dtype",
            default="f32",
            metavar="NAME",
        ),
    ] = "f32",  # fmt: skip
    force: ForceOpt = False,
    root: RootOpt = Path("checkpoints"),
) -> None:
    """A GGUF file for llama.cpp, llama-server, ollama and LM Studio (needs the gguf
    extra: pip install "minigpt\\[gguf]").

    RoPE + RMSNorm + SwiGLU models become llama.cpp's llama, learned or sinusoidal
    positions + LayerNorm + GELU its gpt2; the tokenizer becomes GGUF's GPT-2 byte-level
    BPE (bpe and tiktoken tokenizers with GPT-2's pre-tokenizer).
    """
    done = export_gguf(run or find_latest_checkpoint(root), out, dtype, force)
    c = done.config
    stdout().print(
        f"exported llama.cpp {done.architecture} ({c.n_layer} layers, width {c.n_embd}, "
        f"vocabulary {c.vocab_size}, {done.dtype}) to {out}\n"
        f'try: llama-cli -m {out} -p "Hello" -n 100',
        markup=False, soft_wrap=True,
    )  # fmt: skip
