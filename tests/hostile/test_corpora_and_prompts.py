"""Hostile corpora and prompts: odd encodings, binary files, tiny files, literal
special tokens; prompts that are empty, huge, unencodable or full of control
characters; sampling options at their edges. Each works as documented or ends in one
clear line, and nothing the user had changes."""

from __future__ import annotations

import codecs
import json
from pathlib import Path

import numpy as np
import pytest

from minigpt.data.dataset import load_dataset
from tests.hostile.conftest import tree_hashes

SAMPLE = "ROMEO:\nBut soft, what light through yonder window breaks?\n\n" * 40
PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(200)

# name: (file bytes, extra options, None if it must work else a phrase of the error)
CORPORA: dict[str, tuple[bytes, list[str], str | None]] = {
    "empty": (b"", [], "is empty"),
    "whitespace only": (b" \n\t\r\n  \n", [], "only whitespace"),
    "NUL bytes": (b"text\x00more text" * 50, [], "binary"),
    "a PNG image": (PNG, [], "binary"),
    "UTF-16 with BOM": (SAMPLE.encode("utf-16"), [], "--encoding utf-16"),
    "UTF-16 with --encoding utf-16": (SAMPLE.encode("utf-16"), ["--encoding", "utf-16"], None),
    "UTF-32 with BOM": (SAMPLE.encode("utf-32"), [], "--encoding utf-16"),
    "UTF-8 with BOM": (codecs.BOM_UTF8 + SAMPLE.encode(), [], None),
    "latin-1 bytes": ("café naïve\n".encode("latin-1") * 60, [], "--encoding latin-1"),
    "latin-1 with --encoding": (
        "café naïve\n".encode("latin-1") * 60,
        ["--encoding", "latin-1"],
        None,
    ),  # fmt: skip
    "cp1252 smart quotes": ("\u201cquoted\u201d\n".encode("cp1252") * 60, [], "not valid utf-8"),
    "cp1252 with --encoding": (
        "\u201cquoted\u201d\n".encode("cp1252") * 60,
        ["--encoding", "cp1252"],
        None,
    ),  # fmt: skip
    "CRLF line endings": (SAMPLE.replace("\n", "\r\n").encode(), [], None),
    "literal <|endoftext|>": ((SAMPLE + "<|endoftext|>").encode() * 2, [], None),
    "1 character": (b"a", [], "too short"),
    "unknown encoding": (SAMPLE.encode(), ["--encoding", "klingon"], "unknown --encoding"),
    "non-text encoding": (SAMPLE.encode(), ["--encoding", "hex"], "not a text encoding"),
    "lone surrogate bytes": (b"ok \xed\xa0\x80 text" * 30, [], "not valid utf-8"),
    "truncated UTF-8 at the end": (SAMPLE.encode() + "한".encode()[:2], [], "not valid utf-8"),
    "UTF-16 without a BOM": (
        SAMPLE.encode("utf-16-le"),
        ["--encoding", "utf-16"],
        "--encoding utf-16-le",
    ),  # fmt: skip
    "UTF-16-LE named": (SAMPLE.encode("utf-16-le"), ["--encoding", "utf-16-le"], None),
    "UTF-8 BOM then a bad byte": (
        codecs.BOM_UTF8 + b"hello\xffworld\n" * 50,
        [],
        "byte 0xff at offset 8",
    ),  # fmt: skip
    "a lone partial BOM": (b"\xef", [], "not valid utf-8"),
    "cp1252 text starting like a BOM": (
        "\u00ff\u00fe text\n".encode("cp1252") * 60,
        ["--encoding", "cp1252"],
        None,
    ),  # fmt: skip
    "escapes decoding to a surrogate": (
        b"a \\ud800 b\n" * 60,
        ["--encoding", "unicode_escape"],
        "unpaired surrogate",
    ),  # fmt: skip
    "one 20,000-character line": (("word " * 4000).encode(), [], None),
}


@pytest.mark.parametrize("tokenizer", ["char", "bpe", "gpt2"])
@pytest.mark.parametrize("name", list(CORPORA))
def test_corpora(cli, tmp_path: Path, name: str, tokenizer: str) -> None:
    data, options, error = CORPORA[name]
    text = tmp_path / "corpus.txt"
    text.write_bytes(data)
    keep = tmp_path / "existing"  # a dataset the user already has, under the same --out
    assert cli("tokenize", text_file(tmp_path), "--tokenizer", "char", "--out", keep).code == 0
    before = tree_hashes(keep)
    out = tmp_path / "fresh"
    extra = ["--vocab-size", "300"] if tokenizer == "bpe" else []
    result = cli("tokenize", text, "--tokenizer", tokenizer, "--out", out, *extra, *options)
    replaced = cli("tokenize", text, "--tokenizer", tokenizer, "--out", keep, "--force",
                   *extra, *options)  # fmt: skip
    if error is None:
        assert result.code == 0, result.err
        check_dataset(out, name, data, options)
        assert replaced.code == 0 and tree_hashes(keep) != before  # --force replaced it
        check_dataset(keep, name, data, options)
    else:
        assert result.one_clear_line and error in result.err, result.err
        assert replaced.one_clear_line
        assert not out.exists()
        assert tree_hashes(keep) == before  # the failed --force left it as it was
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no half-written temp directory


def text_file(tmp_path: Path) -> Path:
    path = tmp_path / "good.txt"
    path.write_text(SAMPLE, encoding="utf-8")
    return path


def check_dataset(out: Path, name: str, data: bytes, options: list[str]) -> None:
    """The documented outcome: the decoded text round-trips through the dataset."""
    dataset = load_dataset(out)
    ids = np.concatenate([dataset.splits["train"], dataset.splits["val"]]).tolist()
    text = dataset.tokenizer.decode(ids)
    encoding = options[1] if options else "utf-8-sig"
    assert text == data.decode(encoding)  # every character, exactly, in every tokenizer
    assert "\ufeff" not in text  # a BOM is dropped, never a token
    if name == "CRLF line endings":
        assert "\r\n" in text  # line endings are kept as they are
    if name == "literal <|endoftext|>":
        eot = dataset.tokenizer.eot_id
        assert eot is None or eot not in ids  # text, never the special token
        assert "<|endoftext|>" in text


def test_a_missing_file_and_a_directory(cli, tmp_path: Path) -> None:
    assert cli("tokenize", tmp_path / "nope.txt").one_clear_line
    assert cli("tokenize", tmp_path).one_clear_line
    assert cli("train", tmp_path / "nope.txt", "--max-iters", "1").one_clear_line


# ---------------------------------------------------------------------------------
# Prompts and sampling options, through `minigpt sample` on a trained char model.

PROMPTS = {
    "empty": "",
    "longer than the window": "ROMEO: " * 300,
    "control characters": "ROMEO:\x07\x1b[31m\x00\x7f",
    "100 KB": "But soft! " * 10_000,
    "emoji and Korean": "ROMEO: 🎉🚀 안녕하세요",
    "a literal special token": "<|endoftext|><|user_start|>",
    "only newlines": "\n\n\n",
}


@pytest.mark.parametrize("name", list(PROMPTS))
def test_prompts_on_a_char_model(cli, trained_run: Path, name: str) -> None:
    prompt = PROMPTS[name]
    before = tree_hashes(trained_run)
    result = cli("sample", "-c", trained_run, "-p", prompt, "-n", "20", "--json")
    tok = load_dataset_tokenizer(trained_run)
    unknown = list(dict.fromkeys(c for c in prompt if c not in tok))
    if unknown:
        assert result.one_clear_line, result.err
        assert all(repr(c) in result.err for c in unknown[:5])  # the message names them
    else:
        assert result.code == 0, result.err
        out = json.loads(result.out)
        assert len(out["samples"][0]["token_ids"]) == 20
    assert tree_hashes(trained_run) == before


def load_dataset_tokenizer(run: Path) -> set[str]:
    spec = json.loads((run / "latest" / "tokenizer.json").read_text())
    return set(spec["chars"])


@pytest.mark.parametrize("tokenizer", ["bpe", "gpt2"])
@pytest.mark.parametrize("name", list(PROMPTS))
def test_prompts_on_byte_level_models(cli, tmp_path: Path, name: str, tokenizer: str,
                                      byte_level_runs: dict[str, Path]) -> None:  # fmt: skip
    """A byte-level vocabulary encodes anything: every prompt generates."""
    result = cli("sample", "-c", byte_level_runs[tokenizer], "-p", PROMPTS[name], "-n", "8",
                 "--json")  # fmt: skip
    assert result.code == 0, result.err
    out = json.loads(result.out)
    ids = out["samples"][0]["token_ids"]
    assert len(ids) == 8 and all(0 <= i < vocab(byte_level_runs[tokenizer]) for i in ids)


def vocab(run: Path) -> int:
    return json.loads((run / "latest" / "config.json").read_text())["tokenizer"]["vocab_size"]


@pytest.fixture(scope="module")
def byte_level_runs(tmp_path_factory: pytest.TempPathFactory, corpus: Path) -> dict[str, Path]:
    from minigpt.cli import main

    out = tmp_path_factory.mktemp("byte-runs")
    runs = {}
    for kind in ("bpe", "gpt2"):
        extra = ["--vocab-size", "300"] if kind == "bpe" else []
        args = ["train", corpus, "--preset", "tiny", "--tokenizer", kind, *extra,
                "--max-iters", 2, "--eval-interval", 1, "--out", out,
                "--run", kind]  # fmt: skip
        assert main([str(a) for a in args]) == 0
        runs[kind] = out / kind
    return runs


EDGES = {
    "temperature 0": (["--temperature", "0"], None),
    "temperature 1e-8": (["--temperature", "1e-8"], None),
    "temperature 1e6": (["--temperature", "1e6"], None),
    "top-k 1": (["--top-k", "1"], None),
    "top-k larger than the vocab": (["--top-k", "100000"], None),
    "top-p 1e-9": (["--top-p", "1e-9"], None),
    "top-p 1": (["--top-p", "1"], None),
    "min-p 1": (["--min-p", "1"], None),
    "all penalties at their limits": (
        [
            "--repetition-penalty",
            "100",
            "--presence-penalty",
            "-100",
            "--frequency-penalty",
            "100",
            "--penalty-window",
            "1",
        ],
        None,
    ),  # fmt: skip
    "temperature NaN": (["--temperature", "nan"], "temperature"),
    "temperature -1": (["--temperature", "-1"], "temperature"),
    "temperature inf": (["--temperature", "inf"], "temperature"),
    "top-p NaN": (["--top-p", "nan"], "top_p"),
    "top-p 0": (["--top-p", "0"], "top_p"),
    "min-p NaN": (["--min-p", "nan"], "min_p"),
    "top-k 0": (["--top-k", "0"], "top_k"),
    "repetition penalty NaN": (["--repetition-penalty", "nan"], "repetition_penalty"),
    "presence penalty inf": (["--presence-penalty", "inf"], "presence_penalty"),
    "frequency penalty NaN": (["--frequency-penalty", "nan"], "frequency_penalty"),
    "negative max tokens": (["-n", "-1"], "max_new_tokens"),
    "zero samples": (["--num-samples", "0"], "num_samples"),
    "top-k not a number": (["--top-k", "many"], "--top-k"),
}


@pytest.mark.parametrize("name", list(EDGES))
def test_sampling_options_at_their_edges(cli, trained_run: Path, name: str) -> None:
    options, error = EDGES[name]
    result = cli("sample", "-c", trained_run, "-p", "ROMEO:", "-n", "30", "--json", *options)
    if error is None:
        assert result.code == 0, result.err
        sample = json.loads(result.out)["samples"][0]
        assert len(sample["token_ids"]) == 30
        assert all(lp <= 0 and lp == lp for lp in sample["logprobs"])  # no NaN
    else:
        assert result.one_clear_line and error in result.err, result.err


# ---------------------------------------------------------------------------------
# A dataset directory from a stranger, passed to `minigpt train`.


def spoil_meta(text: str) -> str:
    return text.replace('"format_version": 1', '"format_version": 1, "x": NaN')


DATASETS = {
    "meta.json with NaN": ("meta.json", lambda b: spoil_meta(b.decode()).encode(), "NaN"),
    "meta.json of 1 MB": (
        "meta.json",
        lambda b: b[:-2] + b', "pad": "' + b"x" * 2**20 + b'"}',
        "too large",
    ),  # fmt: skip
    "meta.json not JSON": ("meta.json", lambda b: b[:20], "not valid JSON"),
    "ids beyond the vocabulary": ("train.bin", lambda b: b"\xff\xff" + b[2:], "outside"),
    "train.bin cut short": ("train.bin", lambda b: b[:-3], "wrong size"),
    "tokenizer.json swapped": (
        "tokenizer.json",
        lambda b: b.replace(b'"a"', b'"A"', 1),
        "tokenizer",
    ),  # fmt: skip
}


@pytest.mark.parametrize("case", list(DATASETS))
def test_hostile_dataset_directories(cli, tmp_path: Path, case: str) -> None:
    data = tmp_path / "data"
    assert cli("tokenize", text_file(tmp_path), "-t", "char", "--out", data).code == 0
    name, spoil, named = DATASETS[case]
    (data / name).write_bytes(spoil((data / name).read_bytes()))
    before = tree_hashes(data)
    result = cli("train", data, "--preset", "tiny", "--max-iters", 2, "--out", tmp_path / "runs")
    assert result.one_clear_line and named in result.err, result.err
    assert tree_hashes(data) == before
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_special_files_and_odd_text_arguments(cli, tmp_path: Path, trained_run: Path) -> None:
    assert cli("train", "/dev/zero", "--max-iters", 1, "--out", tmp_path).one_clear_line
    assert cli("tokenize", "/dev/zero").one_clear_line
    bad_utf8 = cli("tokenize", "--text", "a\udcffb", "-t", "gpt2")  # undecodable argv bytes
    assert bad_utf8.one_clear_line and "not UTF-8" in bad_utf8.err
    for kind in ("char", "gpt2"):
        shown = cli("tokenize", "--text", "a", "-t", kind)
        assert shown.code == 0 and "1 tokens" in shown.out
    huge = cli("sample", "-c", trained_run, "--num-samples", 10**9)
    assert huge.one_clear_line and "fewer --num-samples" in huge.err
