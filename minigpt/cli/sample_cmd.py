"""`minigpt sample`: generate text from a checkpoint, streamed as it is produced.

One sample streams to stdout as it is generated; several (`--num-samples`, decoded as
one batch after a single shared prefill of the prompt) print when all are done.
`--json` prints one JSON object instead (text, ids, log-probabilities, settings);
`--show-probs` adds a table of each token's probabilities and the top alternatives
(`minigpt.cli.probs`). The text always ends with a line break (added when it has
none), so the checkpoint, how it computed (matmul path, CPU threads), speed and time
to first token, which go to stderr in one line at the end, never run into it. On a
terminal, control characters in the text show as symbols (ESC as ␛) unless `--raw`;
into a pipe or a file they are written as they are.
The generating, the text and the JSON record are `minigpt.generation.generate`'s
`generate_text`; this module prints what it yields.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated

from rich.text import Text

from minigpt.checkpoint import Checkpoint
from minigpt.cli import options as opts
from minigpt.cli.probs import TOP_ALTERNATIVES, probs_table
from minigpt.cli.settings import option
from minigpt.cli.terminal import for_terminal, json_line, stderr, stdout, user_text
from minigpt.config import SampleConfig
from minigpt.errors import ConfigError
from minigpt.generation.generate import Completion, TextGeneration, generate_text, prompt_ids

MAX_PROMPT_BYTES = 1 << 20


@opts.sampling_settings()
def sample(
    *,
    checkpoint: opts.CheckpointOpt = None,
    prompt: Annotated[
        str, option("Text to continue.", "--prompt", "-p", default="none", metavar="TEXT")
    ] = "",
    prompt_file: Annotated[
        Path | None,
        option(
            "Read the prompt from a UTF-8 file.", "--prompt-file", default="none", metavar="FILE"
        ),
    ] = None,  # fmt: skip
    config: SampleConfig,
    as_json: Annotated[
        bool, option("Print one JSON object: text, ids, log-probs.", "--json", default="off")
    ] = False,
    show_probs: Annotated[
        bool,
        option("Show each token's probability and alternatives.", "--show-probs", default="off"),
    ] = False,
    raw: opts.RawOpt = False,
    device: opts.DeviceOpt = "auto",
    threads: opts.ThreadsOpt = None,
    matmul: opts.MatmulOpt = "auto",
    root: opts.RootOpt = Path("checkpoints"),
) -> None:
    """Generate text from a trained model (the newest under ./checkpoints by default)."""
    text = read_prompt(prompt, prompt_file)
    ckpt, compute = opts.load_for_generation(
        checkpoint, root, device, threads, matmul, batch=config.num_samples
    )
    show(ckpt, compute, text, config, as_json=as_json, show_probs=show_probs, raw=raw)


def show(
    ckpt: Checkpoint,
    compute: opts.Compute,
    prompt: str,
    config: SampleConfig,
    *,
    as_json: bool,
    show_probs: bool,
    raw: bool = False,
) -> None:
    """Generate from `prompt` and print it: streamed, as a batch or as JSON (`raw`: the
    text as it is, even on a terminal)."""
    write = functools.partial(write_text, raw=raw)
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
        record = {
            "checkpoint": str(ckpt.path),
            "matmuls": compute.matmuls,
            "threads": compute.threads,
        }
        record |= generation.record(prompt, ids, config)
        write(json_line(record, sys.stdout))
    else:
        print_text(generation.completions, prompt, streamed, write)
        if show_probs:
            for i, completion in enumerate(generation.completions):
                title = f"sample {i + 1}" if config.num_samples > 1 else None
                stdout().print(probs_table(ckpt.tokenizer, completion, title))
    stderr().print(Text(summary(ckpt, compute, generation), style="dim"))


def summary(ckpt: Checkpoint, compute: opts.Compute, generation: TextGeneration) -> str:
    """The stderr line: checkpoint, matmul path and threads, speed, time to first token."""
    total, seconds = generation.tokens, generation.seconds
    head = f"{ckpt.path} ({compute}): "
    if total == 0:
        return head + "no tokens generated (--max-new-tokens 0)"
    return head + (
        f"{total} tokens in {seconds:.2f} s ({total / max(seconds, 1e-9):,.1f} tokens/s), "
        f"first token after {generation.first_token_s * 1000:.0f} ms"
    )


def read_prompt(prompt: str, prompt_file: Path | None) -> str:
    """The prompt: --prompt's text, or the UTF-8 text of --prompt-file."""
    if prompt_file is None:
        return user_text(prompt, "the prompt")
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


def print_text(
    completions: list[Completion], prompt: str, streamed: bool, write: Callable[[str], None]
) -> None:
    """After generation: the line break that ends a streamed sample (the prompt and
    its text, already written), or every sample of a batch, each ending in one."""
    if streamed:
        write(line_end(prompt + completions[0].text))
        return
    for i, c in enumerate(completions):
        text = prompt + c.text
        write(f"--- sample {i + 1} ---\n{text}{line_end(text)}")


def line_end(text: str) -> str:
    """What ends `text` with a line break: nothing when it has one (or is empty)."""
    return "" if not text or text.endswith("\n") else "\n"


def write_text(text: str, raw: bool = False) -> None:
    """Model text (and the prompt) to stdout: control characters visible on a terminal,
    unless `raw`."""
    sys.stdout.write(text if raw else for_terminal(text, sys.stdout))
    sys.stdout.flush()
