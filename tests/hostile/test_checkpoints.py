"""Hostile checkpoints and configs: pickle payloads, malformed safetensors, truncations
and bit flips, tensor schema violations, hostile config.json, mixed-up saves.

Every case must end in the project's own error (CheckpointError / one clear line from
the CLI), never run the payload, and leave the user's files byte-identical.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import minigpt
from minigpt.checkpoint import load_checkpoint, read_snapshot
from minigpt.errors import CheckpointError
from tests.hostile.conftest import set_recorded_sha, tree_hashes
from tests.hostile.safetensors_corpus import corpus as safetensors_corpus

PACKAGE = Path(minigpt.__file__).parent


def payload(marker: Path) -> bytes:
    """A protocol-0 pickle whose loading calls os.mkdir(marker): proof if it ever runs."""
    return b"cos\nmkdir\n(V" + str(marker).encode() + b"\ntR."


# ---------------------------------------------------------------------------------
# Nothing unpickles.


def test_no_unpickling_anywhere_in_the_package() -> None:
    banned = re.compile(
        r"torch\.load\b|\bimport pickle\b|\bfrom pickle\b|\bpickle\.|cPickle|\bdill\b|"
        r"joblib|allow_pickle\s*=\s*True|\bmarshal\.loads|torch\.jit\.load|shelve"
    )
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 20
    hits = [
        f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
        for path in sources
        for n, line in enumerate(path.read_text().splitlines(), 1)
        if banned.search(line)
    ]
    assert hits == []


OWN_FILES = [
    "model.safetensors", "config.json", "tokenizer.json",
    "train_state.safetensors", "train_state.json",
]  # fmt: skip
FOREIGN_FILES = ["ckpt.pt", "pytorch_model.bin", "model.pt", "model.ckpt", "train_state.pt"]
READ_BY_SAMPLING = {"model.safetensors", "config.json", "tokenizer.json"}


def commands(run: Path, corpus: Path) -> dict[str, list[object]]:
    return {
        "sample": ["sample", "-c", run, "-n", "5"],
        "chat": ["chat", "-c", run],
        "train --resume": ["train", corpus, "--out", run.parent, "--resume", run],
    }


@pytest.mark.parametrize("command", ["sample", "chat", "train --resume"])
@pytest.mark.parametrize("name", OWN_FILES)
def test_a_pickle_in_place_of_a_checkpoint_file_never_runs(
    cli, run_copy: Path, corpus: Path, tmp_path: Path, name: str, command: str
) -> None:
    marker = tmp_path / "pwned"
    (run_copy / "latest" / name).write_bytes(payload(marker))
    before = tree_hashes(run_copy)
    result = cli(*commands(run_copy, corpus)[command])
    assert not marker.exists()
    if command == "train --resume" or name in READ_BY_SAMPLING:
        assert result.one_clear_line, result.err
        assert name in result.err
    assert tree_hashes(run_copy) == before


@pytest.mark.parametrize("command", ["sample", "chat", "train --resume"])
@pytest.mark.parametrize("name", FOREIGN_FILES)
def test_a_pickle_checkpoint_from_another_tool_is_not_a_minigpt_checkpoint(
    cli, tmp_path: Path, corpus: Path, name: str, command: str
) -> None:
    marker = tmp_path / "pwned"
    run = tmp_path / "downloaded"
    (run / "latest").mkdir(parents=True)
    (run / "latest" / name).write_bytes(payload(marker))
    (run / name).write_bytes(payload(marker))
    before = tree_hashes(run)
    result = cli(*commands(run, corpus)[command])
    assert result.one_clear_line, result.err
    assert "not a minigpt checkpoint" in result.err or "no checkpoint" in result.err
    assert not marker.exists()
    assert tree_hashes(run) == before


@pytest.mark.parametrize("name", FOREIGN_FILES)
def test_a_pickle_beside_a_real_checkpoint_is_never_opened(
    cli, run_copy: Path, tmp_path: Path, name: str
) -> None:
    marker = tmp_path / "pwned"
    (run_copy / "latest" / name).write_bytes(payload(marker))
    result = cli("sample", "-c", run_copy, "-n", "5")
    assert result.code == 0, result.err
    assert not marker.exists()


# ---------------------------------------------------------------------------------
# Malformed safetensors, byte by byte.

CORPUS = safetensors_corpus()


@pytest.mark.parametrize("data", [d for _, d in CORPUS], ids=[n for n, _ in CORPUS])
def test_malformed_weights_are_refused_naming_the_file(cli, run_copy: Path, data: bytes) -> None:
    snapshot = run_copy / "latest"
    (snapshot / "model.safetensors").write_bytes(data)
    set_recorded_sha(snapshot)  # past the checksum: the parser itself must refuse
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(snapshot)
    before = tree_hashes(run_copy)
    result = cli("sample", "-c", run_copy)
    assert result.one_clear_line and "model.safetensors" in result.err
    assert tree_hashes(run_copy) == before


@pytest.mark.parametrize("data", [d for _, d in CORPUS], ids=[n for n, _ in CORPUS])
def test_malformed_training_state_is_refused_naming_the_file(run_copy: Path, data: bytes) -> None:
    snapshot = run_copy / "latest"
    (snapshot / "train_state.safetensors").write_bytes(data)
    state = json.loads((snapshot / "train_state.json").read_text())
    state["state_sha256"] = hashlib.sha256(data).hexdigest()
    (snapshot / "train_state.json").write_text(json.dumps(state))
    with pytest.raises(CheckpointError, match="train_state.safetensors"):
        read_snapshot(snapshot, train_state=True)


# ---------------------------------------------------------------------------------
# Truncations and bit flips of a real checkpoint.


def truncation_lengths(size: int) -> list[int]:
    header = list(range(0, min(size, 512)))  # every length through the header
    return header + list(range(512, size, max(1, size // 200)))


def test_every_truncation_is_refused(trained_run: Path, tmp_path: Path) -> None:
    original = (trained_run / "latest" / "model.safetensors").read_bytes()
    lengths = truncation_lengths(len(original))
    assert len(lengths) > 600
    for checked in (True, False):  # with the checksum, then the parser alone
        for n in lengths:
            snapshot = fresh_snapshot(trained_run, tmp_path)
            (snapshot / "model.safetensors").write_bytes(original[:n])
            if not checked:
                set_recorded_sha(snapshot)
            with pytest.raises(CheckpointError, match="model.safetensors"):
                load_checkpoint(snapshot)


def test_bit_flips_load_identically_or_are_refused(trained_run: Path, tmp_path: Path) -> None:
    """400 seeded single-bit flips: the checksum catches every one; behind it, the
    parser either refuses with the project's error or loads tensors of the right schema."""
    path = trained_run / "latest" / "model.safetensors"
    original = path.read_bytes()
    reference = load_checkpoint(trained_run).model.state_dict()
    rng = random.Random(1234)
    refused = loaded = 0
    for i in range(400):
        data = bytearray(original)
        # half the flips in the header, where the parser works; half anywhere
        pos = rng.randrange(min(len(data), 400) if i % 2 else len(data))
        data[pos] ^= 1 << rng.randrange(8)
        snapshot = fresh_snapshot(trained_run, tmp_path)
        (snapshot / "model.safetensors").write_bytes(bytes(data))
        with pytest.raises(CheckpointError, match="model.safetensors"):
            load_checkpoint(snapshot)
        set_recorded_sha(snapshot)
        try:
            model = load_checkpoint(snapshot).model
        except CheckpointError:
            refused += 1
            continue
        loaded += 1
        state = model.state_dict()
        assert state.keys() == reference.keys()
        assert all(state[k].shape == reference[k].shape for k in state)
    assert refused > 0 and refused + loaded == 400


def fresh_snapshot(run: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "flip"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(run / "latest", dst)
    return dst


# ---------------------------------------------------------------------------------
# The tensor schema.


def rewrite_weights(snapshot: Path, change) -> None:
    tensors = load_file(str(snapshot / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(snapshot / "model.safetensors"))
    set_recorded_sha(snapshot)


def drop(name):
    return lambda t: t.pop(name)


def add(name):
    return lambda t: t.__setitem__(name, torch.zeros(3))


def reshape(name):
    return lambda t: t.__setitem__(name, t[name].reshape(-1)[:-1].clone())


def retype(name, dtype):
    return lambda t: t.__setitem__(name, t[name].to(dtype))


def prefix(p):
    def change(t):
        for k in list(t):
            t[p + k] = t.pop(k)

    return change


def poison(name, value):
    def change(t):
        t[name] = t[name].clone()
        t[name].view(-1)[3] = value

    return change


SCHEMA = {
    "missing tensor": (drop("h.0.attn.c_attn.weight"), "h.0.attn.c_attn.weight"),
    "extra tensor": (add("h.9.attn.bias"), "h.9.attn.bias"),
    "mis-shaped tensor": (reshape("h.1.mlp.c_fc.weight"), "h.1.mlp.c_fc.weight"),
    "float16 tensor": (retype("ln_f.weight", torch.float16), "ln_f.weight"),
    "float64 tensor": (retype("wte.weight", torch.float64), "wte.weight"),
    "integer tensor": (retype("h.0.ln_1.weight", torch.int64), "h.0.ln_1.weight"),
    "_orig_mod. prefix": (prefix("_orig_mod."), "_orig_mod."),
    "module. prefix": (prefix("module."), "module."),
    "NaN weight": (poison("h.0.mlp.c_proj.weight", float("nan")), "h.0.mlp.c_proj.weight"),
    "Inf weight": (poison("wte.weight", float("inf")), "wte.weight"),
    "-Inf weight": (poison("h.1.ln_2.weight", float("-inf")), "h.1.ln_2.weight"),
}


@pytest.mark.parametrize("case", list(SCHEMA))
def test_schema_violations_are_refused_naming_the_tensor(cli, run_copy: Path, case: str) -> None:
    change, named = SCHEMA[case]
    snapshot = run_copy / "latest"
    rewrite_weights(snapshot, change)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(snapshot)
    assert named in str(err.value)
    result = cli("sample", "-c", run_copy)
    assert result.one_clear_line and named in result.err


# ---------------------------------------------------------------------------------
# Hostile config.json.


def edit_model(**fields):
    def change(meta: dict) -> None:
        meta["model"].update(fields)

    return change


def drop_key(key: str, where: str | None = None):
    def change(meta: dict) -> None:
        (meta[where] if where else meta).pop(key)

    return change


def set_key(key: str, value):
    return lambda meta: meta.__setitem__(key, value)


CONFIGS = {
    "n_layer true": (edit_model(n_layer=True), "n_layer"),
    "n_embd a string": (edit_model(n_embd="128"), "n_embd"),
    "n_embd a float": (edit_model(n_embd=32.0), "n_embd"),
    "negative n_embd": (edit_model(n_embd=-32), "n_embd"),
    "n_embd 10**12": (edit_model(n_embd=10**12), "n_embd"),
    "n_layer 10**9": (edit_model(n_layer=10**9), "n_layer"),
    "block_size 2**40": (edit_model(block_size=2**40), "block_size"),
    "vocab_size 0": (edit_model(vocab_size=0), "vocab_size"),
    "n_head not dividing n_embd": (edit_model(n_head=5), "n_head"),
    "unknown position type": (edit_model(pos_encoding="alibi"), "pos_encoding"),
    "unknown model key": (edit_model(n_experts=8), "n_experts"),
    "model missing": (drop_key("model"), "model"),
    "model key missing": (drop_key("n_layer", "model"), "n_layer"),
    "model a list": (set_key("model", [1, 2]), "model"),
    "unknown format version": (set_key("format_version", 99), "format_version"),
    "format version missing": (drop_key("format_version"), "format_version"),
    "vocab smaller than the tokenizer": (edit_model(vocab_size=8), "tokenizer"),
    "tokenizer spec of another tokenizer": (
        set_key("tokenizer", {"kind": "char", "vocab_size": 3, "sha256": "0" * 64}),
        "tokenizer",
    ),
}
RAW_CONFIGS = {
    "NaN literal": (lambda text: text.replace('"dropout": 0.0', '"dropout": NaN'), "NaN"),
    "Infinity literal": (
        lambda text: text.replace('"norm_eps": 1e-05', '"norm_eps": Infinity'),
        "Infinity",
    ),
    "not JSON": (lambda text: text[: len(text) // 2], "not valid JSON"),
    "not UTF-8": (lambda text: "\udcff" + text, "not valid JSON"),
    "a JSON list": (lambda text: "[" + text + "]", "not a JSON object"),
    "50 MB": (lambda text: text + " " * (50 << 20), "too large"),
    "deeply nested": (lambda text: "[" * 100_000 + "]" * 100_000, "not valid JSON"),
}


@pytest.mark.parametrize("case", list(CONFIGS) + list(RAW_CONFIGS))
def test_hostile_config_json_is_refused_before_the_model_is_built(
    cli, run_copy: Path, corpus: Path, case: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = run_copy / "latest" / "config.json"
    if case in CONFIGS:
        change, named = CONFIGS[case]
        meta = json.loads(config.read_text())
        change(meta)
        config.write_text(json.dumps(meta))
    else:
        edit, named = RAW_CONFIGS[case]
        config.write_bytes(edit(config.read_text()).encode("utf-8", "surrogateescape"))
    built = []
    monkeypatch.setattr("minigpt.checkpoint.read.GPT", lambda *a: built.append(a))  # never reached
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(run_copy)
    assert named in str(err.value) and built == []
    monkeypatch.undo()
    before = tree_hashes(run_copy)
    for args in (["sample", "-c", run_copy], ["train", corpus, "--out", run_copy.parent,
                                              "--resume", run_copy]):  # fmt: skip
        result = cli(*args)
        assert result.one_clear_line, result.err
    assert tree_hashes(run_copy) == before


def test_an_unknown_tokenizer_kind_is_refused(cli, run_copy: Path) -> None:
    path = run_copy / "latest" / "tokenizer.json"
    spec = json.loads(path.read_text())
    spec["kind"] = "sentencepiece"
    path.write_text(json.dumps(spec))
    with pytest.raises(CheckpointError, match="tokenizer"):
        load_checkpoint(run_copy)
    assert cli("chat", "-c", run_copy).one_clear_line


def test_weights_from_another_save_are_detected(cli, run_copy: Path) -> None:
    """Weights copied by hand from another save of the same shape: the checksum in
    config.json tells them apart."""
    snapshot = run_copy / "latest"
    tensors = load_file(str(snapshot / "model.safetensors"))
    tensors["wte.weight"] = tensors["wte.weight"] * 1.01
    save_file(tensors, str(snapshot / "model.safetensors"))
    with pytest.raises(CheckpointError, match="not the file this config.json was saved with"):
        load_checkpoint(snapshot)
    result = cli("sample", "-c", run_copy)
    assert result.one_clear_line and "saved with" in result.err


RESUME_SECTIONS = {
    "dataset a string": lambda m: m.__setitem__("dataset", "ab"),
    "data_config a string": lambda m: m["dataset"].__setitem__("data_config", "ab"),
    "train a list": lambda m: m.__setitem__("train", [1, 2]),
    "train missing": lambda m: m.pop("train"),
    "unknown train key": lambda m: m["train"].__setitem__("n_experts", 8),
    "train lr a string": lambda m: m["train"].__setitem__("lr", "fast"),
    "unknown data key": lambda m: m["dataset"]["data_config"].__setitem__("shards", 3),
}


@pytest.mark.parametrize("case", list(RESUME_SECTIONS))
def test_hostile_settings_sections_are_refused_by_resume(
    cli, run_copy: Path, corpus: Path, case: str
) -> None:
    config = run_copy / "latest" / "config.json"
    meta = json.loads(config.read_text())
    RESUME_SECTIONS[case](meta)
    config.write_text(json.dumps(meta))
    before = tree_hashes(run_copy)
    result = cli("train", corpus, "--out", run_copy.parent, "--resume", run_copy)
    assert result.one_clear_line, result.err
    # a bare --resume scans every run under --out: a hostile one must not break it
    bare = cli("train", corpus, "--out", run_copy.parent, "--resume")
    assert bare.one_clear_line, bare.err
    assert tree_hashes(run_copy) == before
