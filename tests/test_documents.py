"""A directory of text files as the corpus: `minigpt train DIR` and `minigpt tokenize DIR`
read every *.txt below DIR in bytewise order of relative path, each document ending
with the end-of-text token; nothing outside DIR is read; the text's sha256 covers
every path and byte, for the dataset cache and for a bare --resume."""

import re
from pathlib import Path

import numpy as np
import pytest

from minigpt.cli import main
from minigpt.config import DataConfig
from minigpt.data.cache import prepare_dataset
from minigpt.data.dataset import Dataset, build_dataset, load_dataset
from minigpt.data.documents import directory_sha256
from minigpt.tokenizer.encodings import ENDOFTEXT

QUICK = ["--preset", "tiny", "--max-iters", "2", "--eval-interval", "2", "--batch-size", "2",
         "--sample-every", "0", "--block-size", "16"]  # fmt: skip


def all_text(dataset: Dataset) -> str:
    ids = np.concatenate([dataset.splits["train"], dataset.splits["val"]]).tolist()
    return dataset.tokenizer.decode(ids)


def make_corpus(root: Path, small_text: str) -> dict[str, str]:
    """Documents in several folders, one without a final line break, plus files that
    are not documents (not .txt, or empty). Returns the documents in their order."""
    docs = {
        "B.txt": small_text[:1500],  # "B" < "a": bytewise, capitals first
        "a.txt": small_text[1500:3000].rstrip("\n"),  # no final line break
        "a/x.txt": small_text[3000:4500],  # "a.txt" < "a/x.txt": '.' < '/'
        "sub/deeper/y.txt": small_text[4500:6000],
    }
    for name, text in docs.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "notes.md").write_text("NOT A DOCUMENT")
    (root / "empty.txt").write_text("")
    (root / ".hidden.txt").write_text("NOT A DOCUMENT")
    (root / ".venv" / "lib").mkdir(parents=True)
    (root / ".venv" / "lib" / "LICENSE.txt").write_text("NOT A DOCUMENT")
    return docs


def test_documents_are_read_in_order_each_ending_with_end_of_text(
    tmp_path: Path, small_text: str
) -> None:
    docs = make_corpus(tmp_path / "corpus", small_text)
    meta = build_dataset(tmp_path / "corpus", DataConfig(tokenizer="gpt2"), tmp_path / "d")
    dataset = load_dataset(tmp_path / "d")
    expected = "".join(text.rstrip("\n") + "\n" + ENDOFTEXT for text in docs.values())
    assert all_text(dataset) == expected and "NOT A DOCUMENT" not in all_text(dataset)
    assert meta["documents"] == 4 and meta["source_sha256"] == directory_sha256(tmp_path / "corpus")
    eot = dataset.tokenizer.eot_id
    assert int(dataset.splits["val"][-1]) == eot  # the last document ends with it too
    assert meta["train_bytes"] + meta["val_bytes"] == len(expected) - 4 * len(ENDOFTEXT)


def test_a_char_vocabulary_has_no_end_of_text_so_documents_end_with_a_line_break(
    tmp_path: Path,
) -> None:
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "1.txt").write_text("abc " * 20)  # no line break anywhere
    (tmp_path / "c" / "2.txt").write_text("cab " * 20)
    build_dataset(tmp_path / "c", DataConfig(tokenizer="char"), tmp_path / "d")
    dataset = load_dataset(tmp_path / "d")
    assert all_text(dataset) == "abc " * 20 + "\n" + "cab " * 20 + "\n"
    assert dataset.tokenizer.vocab_size == 5  # " ", "\n", "a", "b", "c"


def test_the_cache_key_covers_every_path_and_byte(tmp_path: Path, small_text: str) -> None:
    root, cache, config = tmp_path / "corpus", tmp_path / "cache", DataConfig(tokenizer="char")
    make_corpus(root, small_text)
    first = prepare_dataset(root, config, cache)
    assert prepare_dataset(root, config, cache).path == first.path  # reused
    (root / "more.md").write_text("still not a document")
    (root / "blank.txt").write_text("")
    assert directory_sha256(root) == first.meta["source_sha256"]  # no new text
    seen = {first.meta["source_sha256"]}
    changes = [
        lambda: (root / "a" / "x.txt").write_text(small_text[3000:4500].replace("e", "E", 1)),
        lambda: (root / "a" / "x.txt").rename(root / "a" / "w.txt"),
        lambda: (root / "new.txt").write_text("a new document\n"),
    ]
    for change in changes:
        change()
        rebuilt = prepare_dataset(root, config, cache)
        assert rebuilt.meta["source_sha256"] not in seen and rebuilt.path != first.path
        assert rebuilt.meta["source_sha256"] == directory_sha256(root)
        seen.add(rebuilt.meta["source_sha256"])


def test_nothing_outside_the_directory_is_read(tmp_path: Path, small_text: str) -> None:
    root = tmp_path / "corpus"
    make_corpus(root, small_text)
    outside = tmp_path / "private"
    outside.mkdir()
    (outside / "secret.txt").write_text("SECRET " * 50)
    (root / "linked").symlink_to(outside)  # a folder link: never followed
    (root / "alias.txt").symlink_to(root / "notes.md")  # a link inside: read
    build_dataset(root, DataConfig(tokenizer="char"), tmp_path / "d")
    text = all_text(load_dataset(tmp_path / "d"))
    assert "SECRET" not in text and text.count("NOT A DOCUMENT") == 1


REFUSED = {
    "no .txt at all": (lambda d: (d / "x.md").write_text("words " * 50), "holds no .txt file"),
    "only empty .txt": (lambda d: (d / "x.txt").write_text(""), "holds no .txt file"),
    "only whitespace": (lambda d: (d / "x.txt").write_text(" \n" * 50), "only whitespace"),
    "link leaving it": (
        lambda d: (d / "x.txt").symlink_to(d.parent / "elsewhere.txt"),
        r"corpus/x\.txt is a link to a file outside .*corpus.*remove the link",
    ),
    "broken link": (lambda d: (d / "x.txt").symlink_to(d / "gone"), "not a regular file"),
    "not utf-8": (
        lambda d: (d / "sub" / "l.txt").write_bytes(b"na\xefve " * 100),
        r"corpus/sub/l\.txt is not valid utf-8 \(byte 0xef at offset 2\).*--encoding",
    ),
}


@pytest.mark.parametrize("command", ["train", "tokenize"])
@pytest.mark.parametrize("case", list(REFUSED))
def test_a_directory_that_is_no_corpus_is_refused_in_one_line(
    case: str, command: str, tmp_path: Path, small_text: str, capsys: pytest.CaptureFixture
) -> None:
    root = tmp_path / "corpus"
    (root / "sub").mkdir(parents=True)
    (tmp_path / "elsewhere.txt").write_text(small_text[:5000])
    if case == "not utf-8":
        (root / "sub" / "fine.txt").write_text(small_text[:3000])
    make, expected = REFUSED[case]
    make(root)
    code = main([command, str(root), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 1 and len(lines) == 1 and "Traceback" not in err, err
    assert re.search(expected, lines[0]), lines[0]
    assert not any((tmp_path / "out").rglob("*"))  # no run, no dataset


def test_another_encoding_applies_to_every_file(tmp_path: Path, small_text: str) -> None:
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "l.txt").write_bytes(("naïve " * 100).encode("latin-1"))
    (root / "m.txt").write_bytes(small_text[:3000].encode("latin-1"))
    build_dataset(root, DataConfig(tokenizer="char", encoding="latin-1"), tmp_path / "d")
    assert all_text(load_dataset(tmp_path / "d")).startswith("naïve naïve")


def test_train_dir_then_a_bare_resume_continues_that_run(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    make_corpus(Path("corpus"), small_text)
    assert main(["train", "corpus", *QUICK, "-t", "char", "--run", "r", "--stop-at", "1"]) == 0
    capsys.readouterr()
    assert main(["train", "corpus", *QUICK, "--resume"]) == 0
    assert "resumed    at step 1" in capsys.readouterr().out
    (Path("corpus") / "B.txt").write_text(small_text[:1500].upper())
    assert main(["train", "corpus", *QUICK, "--resume"]) == 1
    assert "corpus changed since run r was trained on it" in capsys.readouterr().err


def test_tokenize_dir_writes_a_dataset_beside_it(
    tmp_path: Path, small_text: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    monkeypatch.chdir(tmp_path)
    make_corpus(Path("corpus"), small_text)
    assert main(["tokenize", "corpus/", "-t", "char"]) == 0
    assert "4 documents" in capsys.readouterr().out
    assert load_dataset(tmp_path / "corpus-char").meta["source"] == "corpus"
