"""Input files, dataset directories, the cache, and batches."""

import codecs
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from minigpt.config import DataConfig
from minigpt.data.batches import get_batch, iter_windows
from minigpt.data.cache import prepare_dataset
from minigpt.data.corpus import TextReader
from minigpt.data.dataset import (
    Dataset,
    build_dataset,
    check_context_fits,
    check_text_file,
    load_dataset,
)
from minigpt.errors import DataError


def decode_text(raw: bytes, encoding: str, source: str) -> str:
    """What a dataset built from `raw` holds: checked by the first pass, then decoded."""
    reader = TextReader(raw, encoding, source)
    reader.scan()
    return "".join(reader.texts())


@pytest.mark.parametrize(
    "raw, encoding, message",
    [
        (b"", "utf-8", "is empty"),
        (b" \n\t \r\n", "utf-8", "only whitespace"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", "utf-8", r"binary file \(NUL byte at offset 8\)"),
        (b"caf\xe9 au lait", "utf-8", r"not valid utf-8 \(byte 0xe9 at offset 3\).*--encoding"),
        (b"hello", "klingon", "unknown --encoding"),
    ],
    ids=["empty", "whitespace", "binary", "latin1-as-utf8", "bad-encoding"],
)
def test_bad_input_text(raw: bytes, encoding: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        decode_text(raw, encoding, "in.txt")


def test_other_encodings_and_bom() -> None:
    assert decode_text(b"caf\xe9", "latin-1", "x") == "café"
    assert decode_text(codecs.BOM_UTF8 + "안녕".encode(), "utf-8", "x") == "안녕"
    assert decode_text("hi\r\nyou".encode("utf-16"), "utf-16", "x") == "hi\r\nyou"


def test_missing_file_says_how_to_get_shakespeare(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="minigpt download shakespeare"):
        check_text_file(tmp_path / "data" / "shakespeare.txt")
    with pytest.raises(DataError, match="does not exist; check the path"):
        check_text_file(tmp_path / "other.txt")
    with pytest.raises(DataError, match="is a directory"):
        check_text_file(tmp_path)


def test_dataset_directory_contents(char_dataset: Dataset, small_text: str) -> None:
    meta = char_dataset.meta
    assert meta["train_tokens"] + meta["val_tokens"] == len(small_text)
    assert meta["val_tokens"] == pytest.approx(0.1 * len(small_text), abs=1)
    assert char_dataset.splits["train"].dtype == np.uint16
    assert isinstance(char_dataset.splits["train"], np.memmap)
    ids = np.concatenate([char_dataset.splits["train"], char_dataset.splits["val"]])
    assert char_dataset.tokenizer.decode(ids.tolist()) == small_text
    on_disk = json.loads((char_dataset.path / "meta.json").read_text())
    assert on_disk["tokenizer"] == char_dataset.tokenizer.spec()


def test_large_vocab_uses_uint32(tmp_path: Path) -> None:
    text = "".join(chr(0x20000 + i) for i in range(66_000)) * 2  # no surrogates here
    build_dataset(text.encode(), DataConfig(tokenizer="char"), tmp_path / "d")
    assert load_dataset(tmp_path / "d").splits["train"].dtype == np.uint32


def test_too_short_for_validation_split(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="too short"):
        build_dataset(b"hello world", DataConfig(val_fraction=0.01), tmp_path / "d")
    assert not (tmp_path / "d").exists()
    assert list(tmp_path.iterdir()) == []  # no half-written temp dir


def test_too_short_for_the_context(char_dataset: Dataset) -> None:
    check_context_fits(char_dataset, 256)
    with pytest.raises(DataError, match="too few for a context of 100000"):
        check_context_fits(char_dataset, 100_000)


def test_cache_is_reused(tmp_path: Path, small_text: str) -> None:
    text = tmp_path / "t.txt"
    text.write_text(small_text)
    first = prepare_dataset(text, DataConfig(), tmp_path / "cache").path
    stamp = (first / "train.bin").stat().st_mtime_ns
    assert prepare_dataset(text, DataConfig(), tmp_path / "cache").path == first
    assert (first / "train.bin").stat().st_mtime_ns == stamp
    other = prepare_dataset(text, DataConfig(val_fraction=0.2), tmp_path / "cache").path
    assert other != first
    text.write_text(small_text + "more")
    assert prepare_dataset(text, DataConfig(), tmp_path / "cache").path not in (first, other)


def test_batches_are_windows_from_the_generator(char_dataset: Dataset) -> None:
    data = char_dataset.splits["train"]
    x1, y1 = get_batch(data, 4, 16, torch.Generator().manual_seed(3))
    x2, y2 = get_batch(data, 4, 16, torch.Generator().manual_seed(3))
    assert x1.shape == y1.shape == (4, 16)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)
    assert torch.equal(x1[:, 1:], y1[:, :-1])  # targets are inputs shifted by one
    x3, _ = get_batch(data, 4, 16, torch.Generator().manual_seed(4))
    assert not torch.equal(x1, x3)


def test_iter_windows_covers_every_target_once() -> None:
    data = np.arange(103, dtype=np.uint16)
    targets = []
    for x, y in iter_windows(data, block_size=10, batch_size=4):
        assert torch.equal(x + 1, y)
        targets.extend(y.flatten().tolist())
    assert targets == list(range(1, 103))


def test_tokenize_never_replaces_what_is_not_a_dataset(tmp_path: Path, small_text: str) -> None:
    mine = tmp_path / "notes"
    mine.mkdir()
    (mine / "keep.txt").write_text("precious")
    with pytest.raises(DataError, match="not a dataset"):
        build_dataset(small_text.encode(), DataConfig(tokenizer="char"), mine)
    assert [p.name for p in mine.iterdir()] == ["keep.txt"]
    with pytest.raises(DataError, match="not a dataset"):
        build_dataset(small_text.encode(), DataConfig(tokenizer="char"), mine / "keep.txt")
    assert (mine / "keep.txt").read_text() == "precious"


def test_an_existing_dataset_is_replaced_only_when_asked(tmp_path: Path, small_text: str) -> None:
    out = tmp_path / "d"
    build_dataset(small_text.encode(), DataConfig(tokenizer="char"), out)
    with pytest.raises(DataError, match="--force"):
        build_dataset(small_text[:20_000].encode(), DataConfig(tokenizer="char"), out)
    assert load_dataset(out).meta["train_tokens"] + load_dataset(out).meta["val_tokens"] == len(
        small_text
    )
    build_dataset(small_text[:20_000].encode(), DataConfig(tokenizer="char"), out, replace=True)
    assert load_dataset(out).meta["train_tokens"] == 18_000


def test_char_vocabulary_covers_the_validation_text(tmp_path: Path) -> None:
    meta = build_dataset(("abc" * 30 + "Z").encode(), DataConfig(tokenizer="char"), tmp_path / "d")
    assert meta["tokenizer"]["vocab_size"] == 4


def test_binary_codecs_are_not_text_encodings() -> None:
    with pytest.raises(DataError, match="not a text encoding"):
        decode_text(b"68656c6c6f", "hex", "x")


LAYOUTS = {
    "lines": lambda t: t,
    "crlf": lambda t: t.replace("\n", "\r\n"),
    "paragraphs": lambda t: t.replace("\n", "\n\n"),
    # lines of 3,000+ characters: past SEGMENT_CHARS, so the cut is found ahead
    "long lines": lambda t: "\n".join(p.replace("\n", " ") for p in t.split("\n한")),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("kind", ["char", "bpe", "gpt2"])
def test_streaming_in_small_chunks_gives_the_same_ids(
    kind: str, layout: str, tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Read 777 bytes at a time (splitting multi-byte characters) and encode ~1000
    characters at a time: the ids equal encoding each split whole."""
    import minigpt.data.corpus as corpus

    text = (small_text[:3000] + "\n한국어 텍스트와 이모지 🎉🚀\nnaïve café\n") * 4
    text = LAYOUTS[layout](text)
    path = tmp_path / "in.txt"
    path.write_bytes(text.encode("utf-8"))
    cfg = DataConfig(tokenizer=kind, vocab_size=300 if kind == "bpe" else None)
    whole = build_dataset(path, cfg, tmp_path / "whole")
    monkeypatch.setattr(corpus, "CHUNK_BYTES", 777)
    monkeypatch.setattr(corpus, "SEGMENT_CHARS", 1000)
    monkeypatch.setattr(corpus, "LOOK_BACK", 300)
    streamed = build_dataset(path, cfg, tmp_path / "streamed")
    assert streamed["source_sha256"] == whole["source_sha256"]
    a, b = load_dataset(tmp_path / "whole"), load_dataset(tmp_path / "streamed")
    assert a.tokenizer.spec() == b.tokenizer.spec()
    for split in ("train", "val"):
        assert np.array_equal(a.splits[split], b.splits[split])
    n_train = int(len(text) * 0.9)
    assert a.tokenizer.encode(text[n_train:]) == a.splits["val"].tolist()


def test_the_cautious_cut_rule_also_keeps_gpt2_ids(
    small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The rule for other pre-tokenizers (cut only after the newline of "x\\ny")."""
    import minigpt.data.corpus as corpus
    from minigpt.tokenizer import TiktokenTokenizer

    monkeypatch.setattr(corpus, "SEGMENT_CHARS", 500)
    tok = TiktokenTokenizer("gpt2")
    text = small_text[:20_000]
    reader = corpus.TextReader(text.encode(), "utf-8", "x")
    scan = reader.scan()
    pieces = list(reader.segments(scan, len(text) - 100, gpt2_cuts=False))
    assert len(pieces) > 20
    assert "".join(p for _, p in pieces) == text
    ids = [i for split, p in pieces if split == "train" for i in tok.encode(p)]
    assert ids == tok.encode(text[: len(text) - 100])


def test_a_file_changed_between_the_passes_is_refused(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import minigpt.data.corpus as corpus

    path = tmp_path / "in.txt"
    path.write_text(small_text)
    scan = corpus.TextReader.scan

    def scan_then_edit(self, *args, **kwargs):
        result = scan(self, *args, **kwargs)
        path.write_text(small_text.replace("e", "E", 1))
        return result

    monkeypatch.setattr(corpus.TextReader, "scan", scan_then_edit)
    with pytest.raises(DataError, match="changed while it was being read"):
        build_dataset(path, DataConfig(tokenizer="char"), tmp_path / "d")
    assert not (tmp_path / "d").exists()


def test_a_bad_byte_is_named_at_its_offset_across_chunks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import minigpt.data.corpus as corpus

    monkeypatch.setattr(corpus, "CHUNK_BYTES", 10)
    data = "안녕하세요 세계".encode() + b"\xff" + b"more text"
    with pytest.raises(DataError, match=f"byte 0xff at offset {len(data) - 10}"):
        build_dataset(data, DataConfig(tokenizer="char"), tmp_path / "d")
