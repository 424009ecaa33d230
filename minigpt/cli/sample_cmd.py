"""`minigpt sample`: generate text from a checkpoint, streamed as it is produced.

One sample streams to stdout as it is generated; several (`--num-samples`, decoded as
one batch after a single shared prefill of the prompt) print when all are done.
`--json` prints one JSON object instead (text, ids, log-probabilities, settings);
`--show-probs` adds a table of each token's probability and the top alternatives.
The checkpoint, speed and time to first token go to stderr, in one line at the end.
The generating, the text and the JSON record are `minigpt.generation.generate`'s
`generate_text`; this module prints what it yields.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from minigpt.checkpoint import Checkpoint
from minigpt.cli import options as opts
from minigpt.cli.terminal import for_terminal, stderr, stdout
from minigpt.config import SampleConfig
from minigpt.errors import ConfigError
from minigpt.generation.generate import Completion, TextGeneration, generate_text, prompt_ids
from minigpt.tokenizer.encodings import Tokenizer

TOP_ALTERNATIVES = 5
MAX_PROMPT_BYTES = 1 << 20


@opts.sampling_settings()
def sample(
    *,
    checkpoint: opts.CheckpointOpt = None,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text to continue.")] = "",
    prompt_file: Annotated[
        Path | None, typer.Option("--prompt-file", help="Read the prompt from a UTF-8 file.")
    ] = None,
    config: SampleConfig,
    as_json: Annotated[
        bool, typer.Option("--json", help="Print one JSON object: text, ids, log-probs.")
    ] = False,
    show_probs: Annotated[
        bool,
        typer.Option("--show-probs", help="Show each token's probability and alternatives."),
    ] = False,
    device: opts.DeviceOpt = "auto",
    root: opts.RootOpt = Path("checkpoints"),
) -> None:
    """Generate text from a trained model (the newest under ./checkpoints by default)."""
    text = read_prompt(prompt, prompt_file)
    ckpt, matmuls = opts.load_for_generation(checkpoint, root, device)
    show(ckpt, matmuls, text, config, as_json=as_json, show_probs=show_probs)


def show(
    ckpt: Checkpoint,
    matmuls: str,
    prompt: str,
    config: SampleConfig,
    *,
    as_json: bool,
    show_probs: bool,
) -> None:
    """Generate from `prompt` and print it: streamed, as a batch or as JSON."""
    ids = prompt_ids(ckpt.tokenizer, prompt)
    block = ckpt.config.block_size
    if len(ids) > block:
        stderr().print(f"the prompt is {len(ids)} tokens; the model sees only the last {block}")
    streamed = config.num_samples == 1 and not as_json
    top = TOP_ALTERNATIVES if show_probs else 0
    # Refused here, before any output, when memory cannot hold it.
    generation = generate_text(ckpt.model, ckpt.tokenizer, ids, config, top=top, as_record=as_json)
    if streamed:
        write(prompt)
    for chunk in generation:
        if streamed:
            write(chunk.text)
    if as_json:
        record = {"checkpoint": str(ckpt.path), "matmuls": matmuls}
        record |= generation.record(prompt, ids, config)
        write(json.dumps(record, ensure_ascii=False) + "\n")
    else:
        print_text(generation.completions, prompt, streamed)
        if show_probs:
            for i, completion in enumerate(generation.completions):
                title = f"sample {i + 1}" if config.num_samples > 1 else None
                stdout().print(probs_table(ckpt.tokenizer, completion, title))
    stderr().print(Text(summary(ckpt, matmuls, generation), style="dim"))


def summary(ckpt: Checkpoint, matmuls: str, generation: TextGeneration) -> str:
    """The stderr line: checkpoint, matmul path, speed and time to the first token."""
    total, seconds = generation.tokens, generation.seconds
    head = f"{ckpt.path} (matmuls {matmuls}): "
    if total == 0:
        return head + "no tokens generated (--max-new-tokens 0)"
    return head + (
        f"{total} tokens in {seconds:.2f} s ({total / max(seconds, 1e-9):,.1f} tokens/s), "
        f"first token after {generation.first_token_s * 1000:.0f} ms"
    )


def read_prompt(prompt: str, prompt_file: Path | None) -> str:
    if prompt_file is None:
        return prompt
    if prompt:
        raise ConfigError("give --prompt or --prompt-file, not both")
    try:
        with open(prompt_file, "rb") as f:
            raw = f.read(MAX_PROMPT_BYTES + 1)  # never more, whatever the file (/dev/zero)
    except OSError as e:
        raise ConfigError(f"cannot read the prompt file {prompt_file}: {e.strerror or e}") from e
    if len(raw) > MAX_PROMPT_BYTES:
        raise ConfigError(
            f"the prompt file {prompt_file} is larger than {MAX_PROMPT_BYTES >> 20} MiB; the "
            "model sees only its context window of it anyway: give a shorter prompt"
        )
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"the prompt file {prompt_file} is not UTF-8 text (byte {e.start}); save it as UTF-8"
        ) from e


def print_text(completions: list[Completion], prompt: str, streamed: bool) -> None:
    """After generation: the end of a streamed sample, or every sample of a batch."""
    if streamed:
        write("\n")
        return
    for i, c in enumerate(completions):
        write(f"--- sample {i + 1} ---\n{prompt}{c.text}\n")


def show_token(tok: Tokenizer, id: int) -> str:
    """A token as printable text: escapes for newlines, tabs and partial characters."""
    text = tok.token_bytes(id).decode("utf-8", errors="backslashreplace")
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text


def probs_table(tok: Tokenizer, c: Completion, title: str | None) -> Table:
    table = Table(title=title, show_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("token")
    table.add_column("p", justify="right")
    table.add_column(f"top {TOP_ALTERNATIVES} the model considered", style="dim")
    for i, (id, lp) in enumerate(zip(c.ids, c.logprobs, strict=True)):
        p = math.exp(lp)
        alts = "  ".join(f"{show_token(tok, a)!r} {math.exp(alp):.2f}" for a, alp in c.top[i])
        cells = (str(i + 1), repr(show_token(tok, id)), f"{p:.3f}", alts)
        row = [Text(cell) for cell in cells]  # Text, not markup: tokens may hold "[/...]"
        row[2].stylize(opts.probability_style(p))
        table.add_row(*row)
    return table


def write(text: str) -> None:
    """Model text (and the prompt) to stdout: control characters visible on a terminal."""
    sys.stdout.write(for_terminal(text, sys.stdout))
    sys.stdout.flush()
