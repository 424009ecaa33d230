"""`minigpt download` and `minigpt tokenize`."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Annotated

import typer
from rich.status import Status
from rich.table import Table

from minigpt.checkpoint import load_checkpoint
from minigpt.cli.settings import option, parse_duration, with_settings
from minigpt.cli.signals import Interrupted, terminate_as_interrupt
from minigpt.cli.terminal import stderr, stdout, user_text
from minigpt.cli.tokens import render_tokens, wants_colour
from minigpt.config import DataConfig
from minigpt.data.cache import display_name
from minigpt.data.dataset import (
    build_dataset,
    check_corpus,
    tokenizer_for,
    tokenizer_from_corpus,
)
from minigpt.data.documents import open_corpus
from minigpt.data.download import Limits, Progress, corpus, fetch
from minigpt.errors import DataError
from minigpt.tokenizer.encodings import Tokenizer


def download(
    name: Annotated[str, typer.Argument(help="The corpus: shakespeare.", metavar="NAME")] = (
        "shakespeare"
    ),
    source: Annotated[
        str | None,
        option(
            "A mirror URL or a local file to copy instead.",
            "--from",
            default="the corpus's own URL",
            metavar="URL",
        ),
    ] = None,
    data_dir: Annotated[
        Path, option("Where to put it.", "--dir", default="data", metavar="DIR")
    ] = Path("data"),  # fmt: skip
    timeout: Annotated[
        str,
        option(
            "Give up after this long in all (90s, 10m); a download that gets fewer than "
            f"{Limits().stall_bytes:,} bytes in {Limits().stall_seconds:g} s stops sooner.",
            "--timeout",
            default="10m",
            metavar="DURATION",
        ),
    ] = "10m",  # fmt: skip
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
    file: Annotated[
        Path | None,
        typer.Argument(
            help="Text file, or directory of .txt files (each a document).", metavar="FILE"
        ),  # fmt: skip
    ] = None,
    text: Annotated[
        str | None,
        option("Show how this text splits into tokens.", "--text", default="none", metavar="TEXT"),
    ] = None,  # fmt: skip
    data_config: DataConfig,
    checkpoint: Annotated[
        Path | None,
        option(
            "Use this checkpoint's tokenizer.",
            "--checkpoint",
            default="train one from FILE",
            metavar="RUN",
        ),
    ] = None,
    out: Annotated[
        Path | None,
        option("Dataset directory.", "--out", default="next to FILE", metavar="DIR"),
    ] = None,
    force: Annotated[
        bool, option("Replace an existing dataset.", "--force", default="off")
    ] = False,  # fmt: skip
    no_color: Annotated[
        bool,
        option(
            "Show --text's tokens between | marks instead of in colours (as NO_COLOR does, "
            "and as a pipe gets).",
            "--no-color",
            default="off",
        ),
    ] = False,
) -> None:
    """Tokenize a text file (or a directory of them) into a dataset, or show how --text splits.

    The dataset directory holds train.bin and val.bin (token ids), meta.json and
    tokenizer.json; its statistics are printed as a table.
    """
    if text is not None:
        text = user_text(text, "--text")
        tok = _tokenizer_for_display(file, text, data_config, checkpoint)
        console = stdout()
        console.print(render_tokens(tok, text, wants_colour(console, no_color)))
        return
    if file is None:
        raise DataError("give a FILE to tokenize, or --text TEXT to see how text splits")
    check_corpus(file)
    named = file if file.name not in ("", "..") else file.resolve()  # "." has no name
    out_dir = out or named.with_name(f"{named.stem}-{data_config.tokenizer}")
    with stderr().status(f"tokenizing {file} with {data_config.tokenizer}..."):
        meta = build_dataset(file, data_config, out_dir, source=display_name(file), replace=force)
    stdout().print(stats_table(meta, out_dir))


def _tokenizer_for_display(
    file: Path | None, text: str, data_config: DataConfig, checkpoint: Path | None
) -> Tokenizer:
    if checkpoint is not None:
        return load_checkpoint(checkpoint).tokenizer
    if file is not None:
        corpus = open_corpus(check_corpus(file), data_config.encoding, str(file))
        return tokenizer_from_corpus(corpus, data_config)[0]
    if data_config.tokenizer == "bpe":
        raise DataError("a bpe tokenizer is trained on a file: give FILE or --checkpoint")
    return tokenizer_for(data_config, text)


def stats_table(meta: dict, out_dir: Path) -> Table:
    table = Table(title=f"dataset {out_dir}", title_justify="left")
    for column in ("split", "bytes", "tokens", "bytes/token"):
        table.add_column(column, justify="right" if column != "split" else "left")
    for split in ("train", "val"):
        n_bytes, n_tokens = meta[f"{split}_bytes"], meta[f"{split}_tokens"]
        table.add_row(split, f"{n_bytes:,}", f"{n_tokens:,}", f"{n_bytes / max(1, n_tokens):.2f}")
    spec = meta["tokenizer"]
    documents = f"{meta['documents']:,} documents, " if "documents" in meta else ""
    table.caption = (
        f"{documents}tokenizer {spec['kind']}{' ' + spec['name'] if 'name' in spec else ''}, "
        f"vocab size {spec['vocab_size']:,}, {meta['seconds']:.2f} s"
    )
    table.caption_justify = "left"
    return table
