"""`minigpt download` and `minigpt tokenize`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.status import Status
from rich.table import Table
from rich.text import Text

from minigpt.checkpoint import load_checkpoint
from minigpt.cli.settings import with_settings
from minigpt.cli.signals import Interrupted, terminate_as_interrupt
from minigpt.cli.terminal import stderr, stdout
from minigpt.config import DataConfig, parse_duration
from minigpt.data.corpus import TextReader
from minigpt.data.dataset import (
    build_dataset,
    check_text_file,
    tokenizer_for,
    tokenizer_from_corpus,
)
from minigpt.data.download import Limits, Progress, corpus, fetch
from minigpt.errors import DataError
from minigpt.tokenizer.encodings import Tokenizer

TOKEN_COLOURS = ("on #3b4261", "on #4a3b61", "on #3b5f61", "on #613b4a", "on #5f613b")


def download(
    name: Annotated[str, typer.Argument(help="The corpus: shakespeare.")] = "shakespeare",
    source: Annotated[
        str | None,
        typer.Option("--from", help="A mirror URL or a local file to copy instead."),
    ] = None,
    data_dir: Annotated[Path, typer.Option("--dir", help="Where to put it.")] = Path("data"),
    timeout: Annotated[
        str,
        typer.Option(
            "--timeout",
            help="Give up after this long in all (90s, 10m); a download that gets fewer "
            f"than {Limits().stall_bytes:,} bytes in {Limits().stall_seconds:g} s stops sooner.",
        ),
    ] = "10m",
) -> None:
    """Fetch a public corpus into data/, checking its sha256."""
    c = corpus(name)
    dest = data_dir / c.filename
    limits = Limits(deadline=parse_duration(timeout))
    try:
        with terminate_as_interrupt(), stderr().status(f"downloading {c.name}") as status:
            outcome = fetch(c, dest, source, limits, progress=progress_line(status, c.name))
    except KeyboardInterrupt as e:  # Ctrl-C, or SIGTERM: fetch removed its partial file
        raise Interrupted(
            f"interrupted ({str(e) or 'Ctrl-C'}): the download stopped and its partial file "
            f"was removed; {dest} was not written"
        ) from None
    verb = "already present" if outcome == "present" else "downloaded"
    stdout().print(f"{c.name}: {verb} at {dest} (sha256 verified)")


def progress_line(status: Status, name: str) -> Progress:
    """Show a download's progress on the status line (a terminal's only: in a pipe, a
    status line prints nothing)."""
    start = time.monotonic()

    def show(received: int, expected: int | None) -> None:
        rate = received / max(time.monotonic() - start, 1e-3)
        of = f" of {amount(expected)}" if expected else ""
        status.update(f"downloading {name}: {amount(received)}{of} ({amount(rate)}/s)")

    return show


def amount(n: float) -> str:
    """Bytes for a person: B, KiB or MiB."""
    for unit, scale in (("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:,.1f} {unit}"
    return f"{n:,.0f} B"


@with_settings("data_config", DataConfig)
def tokenize(
    *,
    file: Annotated[Path | None, typer.Argument(help="Text file to tokenize.")] = None,
    text: Annotated[
        str | None, typer.Option("--text", help="Show how this text splits into tokens.")
    ] = None,
    data_config: DataConfig,
    checkpoint: Annotated[
        Path | None, typer.Option("--checkpoint", help="Use this checkpoint's tokenizer.")
    ] = None,
    out: Annotated[
        Path | None, typer.Option("--out", help="Dataset directory (default: next to FILE).")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an existing dataset.")] = False,
) -> None:
    """Tokenize a text file into a dataset directory, or show how --text splits.

    The dataset directory holds train.bin and val.bin (token ids), meta.json and
    tokenizer.json; its statistics are printed as a table.
    """
    if text is not None:
        try:
            text.encode("utf-8")
        except UnicodeEncodeError as e:
            raise DataError("--text holds bytes that are not UTF-8; pass UTF-8 text") from e
        tok = _tokenizer_for_display(file, text, data_config, checkpoint)
        stdout().print(render_tokens(tok, text))
        return
    if file is None:
        raise DataError("give a FILE to tokenize, or --text TEXT to see how text splits")
    check_text_file(file)
    out_dir = out or file.with_name(f"{file.stem}-{data_config.tokenizer}")
    with stderr().status(f"tokenizing {file} with {data_config.tokenizer}..."):
        meta = build_dataset(file, data_config, out_dir, source=file.name, replace=force)
    stdout().print(stats_table(meta, out_dir))


def _tokenizer_for_display(
    file: Path | None, text: str, data_config: DataConfig, checkpoint: Path | None
) -> Tokenizer:
    if checkpoint is not None:
        return load_checkpoint(checkpoint).tokenizer
    if file is not None:
        corpus = TextReader(check_text_file(file), data_config.encoding, str(file))
        return tokenizer_from_corpus(corpus, data_config)[0]
    if data_config.tokenizer == "bpe":
        raise DataError("a bpe tokenizer is trained on a file: give FILE or --checkpoint")
    return tokenizer_for(data_config, text)


def render_tokens(tok: Tokenizer, text: str) -> Text:
    """The text with alternating backgrounds per token, then the ids."""
    ids = tok.encode(text)
    shown = Text()
    for i, token_id in enumerate(ids):
        piece = tok.token_bytes(token_id).decode("utf-8", errors="replace")
        shown.append(piece.replace("\n", "\\n\n"), style=TOKEN_COLOURS[i % len(TOKEN_COLOURS)])
    shown.append(f"\n\n{len(ids)} tokens, {len(text.encode())} bytes: {ids}")
    return shown


def stats_table(meta: dict, out_dir: Path) -> Table:
    table = Table(title=f"dataset {out_dir}", title_justify="left")
    for column in ("split", "bytes", "tokens", "bytes/token"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split in ("train", "val"):
        n_bytes, n_tokens = meta[f"{split}_bytes"], meta[f"{split}_tokens"]
        table.add_row(split, f"{n_bytes:,}", f"{n_tokens:,}", f"{n_bytes / max(1, n_tokens):.2f}")
    spec = meta["tokenizer"]
    table.caption = (
        f"tokenizer {spec['kind']}{' ' + spec['name'] if 'name' in spec else ''}, "
        f"vocab size {spec['vocab_size']:,}, {meta['seconds']:.2f} s"
    )
    table.caption_justify = "left"
    return table
