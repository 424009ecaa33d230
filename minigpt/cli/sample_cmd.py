"""`minigpt sample`: generate text from a checkpoint, streamed as it is produced.

One sample streams to stdout as it is generated; several (`--num-samples`, decoded as
one batch after a single shared prefill of the prompt) print when all are done.
`--json` prints one JSON object instead (text, ids, log-probabilities, settings);
`--show-probs` adds a table of each token's probability and the top alternatives.
The checkpoint, speed and time to first token go to stderr, in one line at the end.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

import torch
import typer
from rich.table import Table
from rich.text import Text

from minigpt.checkpoint import Checkpoint
from minigpt.cli import options as opts
from minigpt.cli.app import app, stderr, stdout
from minigpt.config import SampleConfig
from minigpt.errors import ConfigError
from minigpt.generation.generate import Step, generate, prompt_ids
from minigpt.generation.text import TextStream
from minigpt.tokenizer.encodings import Tokenizer

TOP_ALTERNATIVES = 5


@dataclass
class Sample:
    """One generated sequence: its ids, the model's log-probabilities, the text."""

    stream: TextStream
    ids: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    top: list[list[tuple[int, float]]] = field(default_factory=list)

    @property
    def done(self) -> bool:
        return self.stream.stopped


@app.command()
def sample(
    checkpoint: opts.CheckpointOpt = None,
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="Text to continue.")] = "",
    prompt_file: Annotated[
        Path | None, typer.Option("--prompt-file", help="Read the prompt from a UTF-8 file.")
    ] = None,
    max_new_tokens: Annotated[
        int, typer.Option("--max-new-tokens", "-n", help="Tokens to generate.")
    ] = 500,
    temperature: opts.TemperatureOpt = 0.8,
    top_k: opts.TopKOpt = None,
    top_p: opts.TopPOpt = None,
    min_p: opts.MinPOpt = None,
    repetition_penalty: opts.RepetitionOpt = 1.0,
    presence_penalty: opts.PresenceOpt = 0.0,
    frequency_penalty: opts.FrequencyOpt = 0.0,
    penalty_window: opts.WindowOpt = 64,
    stop: opts.StopOpt = None,
    seed: opts.SeedOpt = 1337,
    num_samples: Annotated[
        int,
        typer.Option(
            "--num-samples",
            help="Samples generated together as a batch after one shared prefill (they "
            "share one random stream, so sample 1 of 3 differs from a single sample).",
        ),
    ] = 1,
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
    config = SampleConfig(
        max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k, top_p=top_p,
        min_p=min_p, repetition_penalty=repetition_penalty,
        presence_penalty=presence_penalty, frequency_penalty=frequency_penalty,
        penalty_window=penalty_window, stop=tuple(opts.unescape(s) for s in stop or ()),
        seed=seed, num_samples=num_samples,
    )  # fmt: skip
    ckpt, matmuls = opts.load_for_generation(checkpoint, root, device)
    err = stderr()
    ids = prompt_ids(ckpt.tokenizer, text)
    block = ckpt.config.block_size
    if len(ids) > block:
        err.print(f"the prompt is {len(ids)} tokens; the model sees only the last {block}")
    stream_out = num_samples == 1 and not as_json
    if stream_out:
        write(text)
    samples, first, seconds = run(ckpt, ids, config, stream_out, top=show_probs)
    if as_json:
        print_json(ckpt, text, ids, config, samples, first, seconds, matmuls)
    else:
        finish_text(samples, text, stream_out)
        if show_probs:
            for i, s in enumerate(samples):
                title = f"sample {i + 1}" if num_samples > 1 else None
                stdout().print(probs_table(ckpt.tokenizer, s, title))
    total = sum(len(s.ids) for s in samples)
    summary = f"{ckpt.path} (matmuls {matmuls}): "
    if total == 0:
        summary += "no tokens generated (--max-new-tokens 0)"
    else:
        summary += (
            f"{total} tokens in {seconds:.2f} s ({total / max(seconds, 1e-9):,.1f} tokens/s), "
            f"first token after {first * 1000:.0f} ms"
        )
    err.print(Text(summary, style="dim"))


def read_prompt(prompt: str, prompt_file: Path | None) -> str:
    if prompt_file is None:
        return prompt
    if prompt:
        raise ConfigError("give --prompt or --prompt-file, not both")
    try:
        raw = prompt_file.read_bytes()
    except OSError as e:
        raise ConfigError(f"cannot read the prompt file {prompt_file}: {e.strerror or e}") from e
    try:
        return raw.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as e:
        raise ConfigError(
            f"the prompt file {prompt_file} is not UTF-8 text (byte {e.start}); save it as UTF-8"
        ) from e


def run(
    ckpt: Checkpoint, ids: list[int], config: SampleConfig, stream_out: bool, top: bool
) -> tuple[list[Sample], float, float]:
    """Generate; returns the samples, time to first token and total seconds."""
    tok = ckpt.tokenizer
    device = ckpt.model.device
    idx = torch.tensor([ids], dtype=torch.long, device=device)  # (1, T): shared prefill
    generator = torch.Generator(device=device).manual_seed(config.seed)
    start = time.perf_counter()
    top_n = TOP_ALTERNATIVES if top else 0
    # generate prefills (and sizes the KV cache) now, before any per-sample state exists
    stepper = generate(ckpt.model, idx, config, generator, tok.vocab_size, top=top_n)
    samples = [Sample(TextStream(tok, config.stop)) for _ in range(config.num_samples)]
    first, steps = 0.0, 0
    for step in stepper:
        steps += 1
        if steps == 1:
            first = time.perf_counter() - start
        for row, s in enumerate(samples):
            if not s.done:
                record(s, step, row)
                piece = s.stream.feed([s.ids[-1]])
                if stream_out:
                    write(piece)
        if all(s.done for s in samples):
            break
    return samples, first, time.perf_counter() - start


def record(s: Sample, step: Step, row: int) -> None:
    s.ids.append(int(step.token[row]))
    s.logprobs.append(float(step.logprob[row]))
    if step.top_ids is not None and step.top_logprobs is not None:
        pairs = zip(step.top_ids[row].tolist(), step.top_logprobs[row].tolist(), strict=True)
        s.top.append(list(pairs))


def finish_text(samples: list[Sample], prompt: str, streamed: bool) -> None:
    if streamed:
        write(samples[0].stream.finish() + "\n")
        return
    for i, s in enumerate(samples):
        s.stream.finish()
        write(f"--- sample {i + 1} ---\n{prompt}{s.stream.text}\n")


def print_json(
    ckpt: Checkpoint,
    prompt: str,
    ids: list[int],
    config: SampleConfig,
    samples: list[Sample],
    first: float,
    seconds: float,
    matmuls: str,
) -> None:
    out: dict[str, Any] = {
        "checkpoint": str(ckpt.path),
        "matmuls": matmuls,
        "prompt": prompt,
        "prompt_ids": ids,
        "settings": asdict(config),
        "seed": config.seed,
        "samples": [],
        "time_to_first_token_s": round(first, 6),
        "seconds": round(seconds, 6),
    }
    for s in samples:
        s.stream.finish()
        entry: dict[str, Any] = {
            "text": s.stream.text,
            "token_ids": s.ids,
            "logprobs": [round(lp, 6) for lp in s.logprobs],
            "stopped": s.stream.stopped,
        }
        if s.top:
            entry["top"] = [[[i, round(lp, 6)] for i, lp in alts] for alts in s.top]
        out["samples"].append(entry)
    write(json.dumps(out, ensure_ascii=False) + "\n")


def show_token(tok: Tokenizer, id: int) -> str:
    """A token as printable text: escapes for newlines, tabs and partial characters."""
    text = tok.token_bytes(id).decode("utf-8", errors="backslashreplace")
    return text.encode("unicode_escape").decode("ascii") if not text.isprintable() else text


def probs_table(tok: Tokenizer, s: Sample, title: str | None) -> Table:
    table = Table(title=title, show_edge=False)
    table.add_column("#", justify="right", style="dim")
    table.add_column("token")
    table.add_column("p", justify="right")
    table.add_column(f"top {TOP_ALTERNATIVES} the model considered", style="dim")
    for i, (id, lp) in enumerate(zip(s.ids, s.logprobs, strict=True)):
        p = math.exp(lp)
        alts = "  ".join(f"{show_token(tok, a)!r} {math.exp(alp):.2f}" for a, alp in s.top[i])
        cells = (str(i + 1), repr(show_token(tok, id)), f"{p:.3f}", alts)
        row = [Text(c) for c in cells]  # Text, not markup: tokens may hold "[/...]"
        row[2].stylize(opts.probability_style(p))
        table.add_row(*row)
    return table


def write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()
