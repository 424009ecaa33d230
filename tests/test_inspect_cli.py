"""`minigpt inspect` through the command line, on tiny random checkpoints (RoPE, learned
and sinusoidal positions; char and BPE tokenizers): every view runs, fits 80 columns
in a pipe without escape codes, its JSON is the library's numbers (`minigpt.inspect`),
--png writes a PNG matplotlib reads, and a bad flag is one line on stderr.

A CLI process spends about 2 s importing, so each checkpoint's commands run in one
process (`RUNNER`: `minigpt.cli.main`, the entry `python -m minigpt` calls, with stdout
and stderr redirected to files for each command); `python -m minigpt` itself runs for
the help and for one error.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import typer
from rich.cells import cell_len

from minigpt.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from minigpt.cli.app import build_app
from minigpt.config import SampleConfig
from minigpt.inspect.attention import attention_lists, head_stages
from minigpt.inspect.embeddings import analogy, nearest
from minigpt.inspect.forward import trace_prompt
from minigpt.inspect.lens import logit_lens
from minigpt.inspect.nextdist import next_distribution
from minigpt.inspect.positions import cosine_matrix, position_shifts, position_table, rope_view
from minigpt.inspect.surprise import surprise
from minigpt.model import GPT
from minigpt.parameters import count_parameters
from minigpt.tokenizer.encodings import CharTokenizer
from minigpt.tokenizer.files import train_tokenizer
from tests.conftest import tiny_config

TEXT = "To be, or not to be, that is the question: [bold]x[/bold] $a$ 한국어 🙂\n"
PROMPT = "To be, or not to be"
SURPRISE_TEXT = "To be, or not to be,\nthat is the question: [bold] 한국어 🙂\n"
WIDTH = 80
LONG = 5  # the long prompt: PROMPT this many times (99 characters)
KINDS = {  # name: (position encoding, tokenizer, tied embeddings)
    "rope-char": ("rope", "char", True),
    "learned-bpe": ("learned", "bpe", False),
    "sinusoidal-bpe": ("sinusoidal", "bpe", True),
}
ANSI = re.compile(r"\x1b\[[0-9;]*m")
COLOUR = re.compile(r"\x1b\[(?:[0-9]+;)*(?:3[0-9]|4[0-9]|9[0-7]|10[0-7])[;m]")
ONCE = "rope-char"  # the kind the refusals, the help and every --png run on
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
RUNNER = r"""
import json, sys, traceback
from minigpt.cli import main
codes = []
for i, argv in enumerate(json.loads(sys.argv[1])):
    with open(f"{sys.argv[2]}/{i}.out", "w", encoding="utf-8") as out, \
         open(f"{sys.argv[2]}/{i}.err", "w", encoding="utf-8") as err:
        sys.stdout, sys.stderr = out, err
        try:
            code = main(argv)
        except BaseException:
            traceback.print_exc()
            code = -1
        finally:
            sys.stdout, sys.stderr = sys.__stdout__, sys.__stderr__
    codes.append(code)
print(json.dumps(codes))
"""


@dataclass(frozen=True)
class Done:
    """One command's exit code and output."""

    code: int
    out: str
    err: str

    def json(self) -> dict:
        assert self.code == 0, self.err
        return json.loads(self.out)


@dataclass
class Kind:
    """A checkpoint, the model loaded here, and what its commands printed."""

    name: str
    path: Path
    ckpt: Checkpoint
    token: str  # one token of the prompt, quoted (a leading space kept)
    expression: str  # an analogy of three tokens of the prompt
    done: dict[str, Done]


def run_batch(commands: dict[str, list[str]], tmp: Path, env: dict[str, str]) -> dict[str, Done]:
    """Run each command's argv in one CLI process, stdout and stderr into files."""
    tmp.mkdir(parents=True, exist_ok=True)
    argvs = list(commands.values())
    result = subprocess.run(
        [sys.executable, "-c", RUNNER, json.dumps(argvs), str(tmp)],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    codes = json.loads(result.stdout)
    read = [((tmp / f"{i}.out").read_text("utf-8"), (tmp / f"{i}.err").read_text("utf-8"))
            for i in range(len(argvs))]  # fmt: skip
    return {name: Done(c, o, e) for name, c, (o, e) in zip(commands, codes, read, strict=True)}


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI process: 80 columns, no colour forced, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "NO_COLOR")}
    return {**env, "COLUMNS": str(WIDTH), **extra}


def make_checkpoint(name: str, root: Path) -> tuple[Path, Checkpoint]:
    """A random tiny model of kind `name`, saved and loaded back."""
    pos, tokenizer, tied = KINDS[name]
    tok = (
        CharTokenizer.from_text(TEXT)
        if tokenizer == "char"
        else train_tokenizer("bpe", TEXT * 3, 300)
    )
    torch.manual_seed(0)
    config = tiny_config(vocab_size=tok.vocab_size, pos_encoding=pos, tie_embeddings=tied,
                         n_head=4, block_size=128)  # fmt: skip
    path = root / name / "latest"
    save_checkpoint(path, GPT(config), tok, {"step": 0})
    return path, load_checkpoint(path)


def commands(kind: Kind, tmp: Path) -> dict[str, list[str]]:
    """Every view, its JSON and PNG, and the refusals, for one checkpoint."""
    long_prompt = " ".join([PROMPT] * LONG)
    text_file = tmp / "text.txt"
    text_file.write_text(SURPRISE_TEXT, encoding="utf-8")
    p = ["-p", PROMPT]
    filters = ["--temperature", "0,0.5,1,2", "--top-k", "5", "--top-p", "0.9", "--min-p", "0.05"]
    batch = {
        "weights": ["weights"],
        "weights json": ["weights", "--json"],
        "attention": ["attention", *p],
        "attention stages": ["attention", *p, "--layer", "1", "--head", "2"],
        "attention long": ["attention", "-p", long_prompt, "--layer", "0"],
        "attention stages long": ["attention", "-p", long_prompt, "--head", "1"],
        "attention json": ["attention", *p, "--json"],
        "attention stages json": ["attention", *p, "--json", "--layer", "1", "--head", "2"],
        "positions": ["positions", *p],
        "positions json": ["positions", *p, "--json"],
        "positions png": ["positions", "--png", str(tmp / "positions.png")],
        "embeddings": ["embeddings"],
        "embeddings near": ["embeddings", "--near", kind.token, "--analogy", kind.expression],
        "embeddings json": [
            "embeddings",
            "--json",
            "--near",
            kind.token,
            "--analogy",
            kind.expression,
            "--top",
            "5",
        ],  # fmt: skip
        "lens": ["lens", *p, "--top", "2"],
        "lens long": ["lens", "-p", long_prompt],
        "lens json": ["lens", *p, "--json", "--top", "3"],
        "next": ["next", *p, *filters],
        "next json": ["next", *p, "--json", *filters, "--show", "6"],
        "surprise": ["surprise", str(text_file)],
        "surprise json": ["surprise", "--text", SURPRISE_TEXT, "--json"],
    }
    if kind.name == ONCE:
        batch |= {
            "weights png": ["weights", "--png", str(tmp / "weights.png")],
            "attention png": ["attention", *p, "--png", str(tmp / "attention.png")],
            "embeddings png": ["embeddings", "--png", str(tmp / "embeddings.png")],
            "attention html": ["attention", *p, "--html", str(tmp / "attention.html")],
            "report": ["report", *p, "--out", str(tmp / "report.html")],
            "help": ["--help"],
            "inspect help": ["inspect", "--help"],
        } | {f"bad {name}": argv for name, (argv, _) in REFUSED.items()}
    return {name: argv if "help" in name else ["inspect", *argv, "-c", str(kind.path)]
            for name, argv in batch.items()}  # fmt: skip


REFUSED = {  # a refused command, and a word its one line must hold
    "layer": (["attention", "-p", PROMPT, "--layer", "2"], "--layer 2"),
    "negative layer": (["attention", "-p", PROMPT, "--layer", "-1", "--head", "0"], "--layer -1"),
    "head": (["attention", "-p", PROMPT, "--head", "4"], "--head 4"),
    "empty prompt": (["lens"], "--prompt"),
    "temperature": (["next", "-p", PROMPT, "--temperature", "1,hot"], "--temperature"),
    "negative temperature": (["next", "-p", PROMPT, "--temperature", "-1"], "--temperature"),
    "top-p": (["next", "-p", PROMPT, "--top-p", "1.5"], "top_p"),
    "token": (["embeddings", "--near", "to be"], "one token"),
    "analogy": (["embeddings", "--analogy", "e -"], "analogy"),
    "unknown character": (["embeddings", "--near", "Z"], "'Z'"),
    "lens top": (["lens", "-p", PROMPT, "--top", "0"], "--top 0"),
    "surprise nothing": (["surprise"], "--text"),
    "png name": (["weights", "--png", "weights.jpg"], ".png"),
    "html name": (["report", "-p", PROMPT, "--out", "report.txt"], ".html"),
}


def prepare(name: str, tmp_path_factory: pytest.TempPathFactory) -> Kind:
    """A checkpoint of kind `name`, and the output of every command on it."""
    tmp = tmp_path_factory.mktemp(name)
    path, ckpt = make_checkpoint(name, tmp)
    tok = ckpt.tokenizer
    ids = list(dict.fromkeys(tok.encode(PROMPT)))  # distinct, in order
    one = [f"'{tok.decode([i])}'" for i in ids[:3]]
    k = Kind(name, path, ckpt, one[1], f"{one[0]} - {one[1]} + {one[2]}", {})
    k.done = run_batch(commands(k, tmp), tmp / "out", cli_env())
    return k


@pytest.fixture(scope="module")
def prepared(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Kind]:
    """Each kind, prepared once for the module when a test first asks for it."""
    made: dict[str, Kind] = {}

    def get(name: str) -> Kind:
        if name not in made:
            made[name] = prepare(name, tmp_path_factory)
        return made[name]

    return get


@pytest.fixture(scope="module", params=list(KINDS))
def kind(request: pytest.FixtureRequest, prepared: Callable[[str], Kind]) -> Kind:
    return prepared(request.param)


@pytest.fixture(scope="module")
def once(prepared: Callable[[str], Kind]) -> Kind:
    """The checkpoint the refusals, help and PNGs of every view run on."""
    return prepared(ONCE)


def assert_close(got: list, expected: list) -> None:
    """Nested lists of numbers equal to float32 rounding (the JSON and the library ran in
    different processes)."""
    torch.testing.assert_close(
        torch.tensor(got, dtype=torch.float64), torch.tensor(expected, dtype=torch.float64),
        rtol=1e-4, atol=1e-6,
    )  # fmt: skip


def views(kind: Kind) -> list[str]:
    """The names of the commands that print a view (not JSON, not a refusal)."""
    return [n for n in kind.done if "json" not in n and not n.startswith("bad") and "help" not in n]


def test_every_view_fits_80_columns_as_plain_text(kind: Kind) -> None:
    for name in views(kind):
        done = kind.done[name]
        assert done.code == 0, (name, done.err)
        assert "\x1b" not in done.out, name
        wide = [line for line in done.out.splitlines() if cell_len(line) > WIDTH]
        assert not wide, (name, wide)
        assert done.out.strip(), name


def test_attention_json_is_the_librarys(kind: Kind) -> None:
    traced = trace_prompt(kind.ckpt.model, kind.ckpt.tokenizer, PROMPT)
    record = kind.done["attention json"].json()
    assert set(record) == {"tokens", "attention"}
    assert record["tokens"] == traced.labels
    assert_close(record["attention"], attention_lists(traced))
    stages = kind.done["attention stages json"].json()["stages"]
    expected = head_stages(traced, 1, 2)
    assert (stages["layer"], stages["head"], stages["d_k"]) == (1, 2, expected.d_k)
    assert_close(stages["scores"], expected.scores.tolist())
    masked = [[-math.inf if v is None else v for v in row] for row in stages["masked"]]
    assert_close(masked, expected.masked.tolist())


def test_attention_views_name_the_stages_and_heads(kind: Kind) -> None:
    stages = kind.done["attention stages"].out
    assert "layer 1 head 2" in stages
    assert all(word in stages for word in ("scores", "scaled", "masked", "softmax"))
    assert "-inf" in stages or "·" in stages  # numbers, or shading where they do not fit
    assert "head 3" in kind.done["attention"].out and "layer 1" in kind.done["attention"].out
    assert "layer 1" not in kind.done["attention long"].out
    long = " ".join(kind.done["attention long"].out.split())
    n_tokens = len(kind.ckpt.tokenizer.encode(" ".join([PROMPT] * LONG)))
    assert (f"of {n_tokens} tokens fit this width" in long) == (n_tokens > WIDTH - 8)


def test_weights_json_adds_up_to_the_parameter_count(kind: Kind) -> None:
    record = kind.done["weights json"].json()
    assert record["total"] == sum(count_parameters(kind.ckpt.model).values())
    assert sum(row["count"] for row in record["categories"]) == record["total"]
    assert record["tied"] == kind.ckpt.config.tie_embeddings
    shown = " ".join(kind.done["weights"].out.split())
    assert f"{record['total']:,} parameters by role" in shown
    tied_note = "the unembedding is the embedding matrix (tied): counted once, as the embedding"
    assert (tied_note in shown) == record["tied"]
    assert "each layer (from 0)" in shown


def test_positions_json_is_the_librarys(kind: Kind) -> None:
    model, tok = kind.ckpt.model, kind.ckpt.tokenizer
    record = kind.done["positions json"].json()
    shown = " ".join(kind.done["positions"].out.split())
    assert record["encoding"] == model.config.pos_encoding
    if record["encoding"] == "rope":
        view = rope_view(model)
        assert record["scores"] == pytest.approx(view.scores, rel=1e-5, abs=1e-6)
        assert record["wavelengths"] == pytest.approx(view.wavelengths)
        assert "RoPE adds nothing to the token embeddings" in shown
        assert "does not arise" in shown
        return
    table = position_table(model)
    assert_close(record["table"], table.tolist())
    similarity = cosine_matrix(table)
    assert record["similarity_to_first"] == pytest.approx(similarity[0].tolist(), abs=1e-5)
    d = 3
    mean = similarity.diagonal(d).mean().item()
    assert record["mean_similarity_by_distance"][d] == pytest.approx(mean, abs=1e-5)
    shifts = position_shifts(model, tok, PROMPT)
    assert [s["nearest_id"] for s in record["shifts"]] == [s.nearest_id for s in shifts]
    assert "does adding its position make a token look like another token?" in shown


def test_embeddings_json_is_the_librarys(kind: Kind) -> None:
    model, tok = kind.ckpt.model, kind.ckpt.tokenizer
    record = kind.done["embeddings json"].json()
    near = [n.id for n in nearest(model, tok, kind.token, 5)]
    assert [t["id"] for t in record["near"]["tokens"]] == near
    found = [n.id for n in analogy(model, tok, kind.expression, 5)]
    assert [t["id"] for t in record["analogy"]["tokens"]] == found
    assert "--near TOKEN" in kind.done["embeddings"].out
    assert "≈" in kind.done["embeddings near"].out


def test_lens_json_is_the_librarys_and_the_view_names_the_prediction(kind: Kind) -> None:
    model, tok = kind.ckpt.model, kind.ckpt.tokenizer
    rows = logit_lens(model, tok, trace_prompt(model, tok, PROMPT), k=3)
    record = kind.done["lens json"].json()
    assert [r["name"] for r in record["rows"]] == ["embedding", "layer 1", "layer 2"]
    assert [r["ids"] for r in record["rows"]] == [r.ids for r in rows]
    assert_close(record["rows"][-1]["probs"], rows[-1].probs)
    shown = " ".join(kind.done["lens"].out.split())
    assert "the last row (layer 2) is the model's own prediction" in shown
    assert "= output" in shown


def test_next_json_is_the_samplers_distribution(kind: Kind) -> None:
    model, tok = kind.ckpt.model, kind.ckpt.tokenizer
    config = SampleConfig(top_k=5, top_p=0.9, min_p=0.05)
    view = next_distribution(model, tok, PROMPT, [0, 0.5, 1, 2], config, show=6)
    record = kind.done["next json"].json()
    assert [t["id"] for t in record["top"]] == view.top_ids
    for row in record["top"]:
        expected = [float(at.probs[row["id"]]) for at in view.temperatures]
        assert row["probs"] == pytest.approx(expected, abs=1e-6)
    assert [t["kept"] for t in record["temperatures"]] == [at.kept for at in view.temperatures]
    shown = kind.done["next"].out
    assert all(f"T={t}" in shown for t in ("0", "0.5", "1", "2"))
    assert "cut" in shown and "entropy (bits)" in shown and "kept by top-k" in shown


def test_surprise_is_the_librarys_and_reads_in_a_pipe(kind: Kind) -> None:
    scored = surprise(kind.ckpt.model, kind.ckpt.tokenizer, SURPRISE_TEXT)
    record = kind.done["surprise json"].json()
    assert record["bits_per_byte"] == pytest.approx(scored.bits_per_byte, rel=1e-5)
    assert record["bits"][0] is None and record["ids"] == scored.ids
    shown = kind.done["surprise"].out
    assert re.search(r"\[\d+\.\d\]", shown)  # token[bits]
    assert f"{scored.bits_per_byte:.3f} bits per byte" in shown


def test_png_files_are_images(kind: Kind) -> None:
    from matplotlib.image import imread

    names = [n for n in kind.done if n.endswith(" png")]
    assert names
    for name in names:
        done = kind.done[name]
        assert done.code == 0, done.err
        path = Path(done.err.removeprefix("wrote ").strip())
        assert path.read_bytes().startswith(PNG_SIGNATURE), name
        image = imread(path)
        assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


def test_html_pages_hold_the_attention_json(once: Kind) -> None:
    """--html and `report` write one self-contained page each, holding the numbers of
    --json (the pages themselves are tested in a browser: tests/test_inspect_html.py)."""
    expected = once.done["attention json"].json()
    for name, file in (("attention html", "attention.html"), ("report", "report.html")):
        assert once.done[name].code == 0, once.done[name].err
        page = (once.path.parent.parent / file).read_text("utf-8")
        data = re.search(r'<script type="application/json" id="data">(.*?)</script>', page, re.S)
        assert json.loads(data.group(1)) == expected
        assert not re.search(r"(src|href)=[\"']https?:", page)  # nothing fetched
    assert "wrote" in once.done["report"].out


def test_refusals_are_one_line_without_a_traceback(once: Kind) -> None:
    for name, (_, word) in REFUSED.items():
        done = once.done[f"bad {name}"]
        assert done.code not in (0, -1), (name, done.err)
        lines = done.err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (name, done.err)
        assert word in lines[0], (name, lines[0])
        assert done.out == "", name


def test_colour_on_a_terminal_still_fits(tmp_path: Path, prepared: Callable[[str], Kind]) -> None:
    """With colour forced, colours appear (not with --no-color), and the text under the
    escape codes fits 80 columns."""
    c = ["-c", str(prepared("sinusoidal-bpe").path)]
    batch = {
        "attention": ["inspect", "attention", "-p", PROMPT, *c],
        "stages": ["inspect", "attention", "-p", PROMPT, "--head", "0", *c],
        "positions": ["inspect", "positions", "-p", PROMPT, *c],
        "lens": ["inspect", "lens", "-p", PROMPT, *c],
        "next": ["inspect", "next", "-p", PROMPT, *c],
        "surprise": ["inspect", "surprise", "--text", SURPRISE_TEXT, *c],
        "no color": ["inspect", "surprise", "--text", SURPRISE_TEXT, "--no-color", *c],
    }
    done = run_batch(batch, tmp_path, cli_env(FORCE_COLOR="1", TERM="xterm-256color"))
    for name, d in done.items():
        assert d.code == 0, (name, d.err)
        assert bool(COLOUR.search(d.out)) == (name != "no color"), name
        plain = ANSI.sub("", d.out)
        assert all(cell_len(line) <= WIDTH for line in plain.splitlines()), (name, plain)
    assert "[bold]" in ANSI.sub("", done["surprise"].out)


def test_help_lists_the_commands(once: Kind) -> None:
    """`minigpt inspect --help` lists the views; `minigpt --help` names the group."""
    shown = once.done["inspect help"].out
    for command in (
        "weights",
        "attention",
        "positions",
        "embeddings",
        "lens",
        "next",
        "surprise",
        "report",
    ):
        assert re.search(rf"^\W*{command}\s", shown, re.MULTILINE), (command, shown)
    assert "inspect" in once.done["help"].out


def test_a_refusal_through_python_m_minigpt(once: Kind) -> None:
    """The real entry: exit code non-zero, one line, no traceback."""
    done = subprocess.run(
        [sys.executable, "-m", "minigpt", "inspect", "attention", "-p", PROMPT, "--head", "9",
         "-c", str(once.path)], capture_output=True, text=True, env=cli_env(), timeout=120,
    )  # fmt: skip
    assert done.returncode != 0 and done.stdout == ""
    assert (
        done.stderr.startswith("error: --head 9 is out of range") and "Traceback" not in done.stderr
    )
    assert len(done.stderr.strip().splitlines()) == 1


def test_every_inspect_option_declares_its_default() -> None:
    """As every other command's (tests/test_help.py): help ends with "[default: X]"."""
    group = typer.main.get_command(build_app())
    inspect = group.commands["inspect"]  # type: ignore[attr-defined]
    missing = [f"inspect {name} {p.opts[0]}" for name, command in inspect.commands.items()
               for p in command.params if p.param_type_name == "option"
               and "--help" not in p.opts and "[default: " not in (p.help or "")]  # fmt: skip
    assert not missing, missing
