"""Several processes with real torch.distributed (gloo) under torchrun: 2 processes give
the weights of 1 process accumulating the same micro-batches, `--nproc` launches and
only rank 0 writes, one rank failing ends the job, and a run resumes with another
number of processes on the very same trajectory."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from minigpt.cli.launch import torchrun_command
from minigpt.config import DataConfig
from minigpt.data.dataset import build_dataset
from tests.conftest import SHAKESPEARE

TIMEOUT = 180  # seconds; any subprocess still running by then has hung
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
# `--` keeps torchrun's argparse off minigpt's options (`--run` vs its `--run-path`).
TORCHRUN_2 = [*TORCHRUN, "--nproc_per_node=2", "-m", "--", "minigpt"]
# fp32 for every run: runs compared must compute alike, and `--precision auto` decides
# per run (a busy machine keeps fp32 where a quiet one may take bf16 autocast).
TINY = [
    "--tokenizer", "char", "--preset", "tiny", "--n-layer", "1", "--n-embd", "32",
    "--block-size", "32", "--batch-size", "4", "--dropout", "0", "--max-iters", "8",
    "--eval-interval", "4", "--warmup", "2", "--log-interval", "1", "--sample-every", "0",
    "--device", "cpu", "--precision", "fp32",
]  # fmt: skip


def _env() -> dict[str, str]:
    root = str(Path(__file__).resolve().parents[1])
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": path, "COLUMNS": "120"}


def _run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        command, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=TIMEOUT
    )


def _ok(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    done = _run(command, cwd)
    assert done.returncode == 0, f"{command}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


class Runs:
    """Training runs on one small corpus, each made once and shared by the tests."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.text = root / "small.txt"
        self.text.write_text(SHAKESPEARE.read_text(encoding="utf-8")[:30_000], encoding="utf-8")
        self.out = root / "out"
        self.launch_stdout = ""
        self._done: set[str] = set()

    def args(self, name: str, *extra: str) -> list[str]:
        out = ["--out", str(self.out), "--cache-dir", str(self.root / "cache")]
        return ["train", str(self.text), *TINY, *out, "--run", name, *extra]

    def single(self, grad_accum: int) -> Path:
        """1 process, `grad_accum` micro-batches per step."""
        name = f"single-accum{grad_accum}"
        if name not in self._done:
            args = self.args(name, "--grad-accum", str(grad_accum))
            _ok([sys.executable, "-m", "minigpt", *args], self.root)
            self._done.add(name)
        return self.out / name

    def torchrun(self, grad_accum: int) -> Path:
        """2 processes started by torchrun itself."""
        name = f"torchrun2-accum{grad_accum}"
        if name not in self._done:
            _ok([*TORCHRUN_2, *self.args(name, "--grad-accum", str(grad_accum))], self.root)
            self._done.add(name)
        return self.out / name

    def launched(self) -> Path:
        """`minigpt train --nproc 2 --grad-accum 2`, alone in a directory of its own."""
        name, out = "launched", self.root / "out-launched"
        if name not in self._done:
            args = self.args(name, "--grad-accum", "2", "--nproc", "2")
            args[args.index("--out") + 1] = str(out)
            self.launch_stdout = _ok([sys.executable, "-m", "minigpt", *args], self.root).stdout
            self._done.add(name)
        return out / name


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    return Runs(tmp_path_factory.mktemp("distributed"))


def _weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / "latest" / "model.safetensors"))


def _assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=0, atol=1e-6, msg=name)


def _metrics(run_dir: Path) -> list[dict]:
    lines = (run_dir / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]


# ---------------------------------------------------------------------------------


def test_launcher_command_passes_every_option_through() -> None:
    """torchrun's own parser, on the command `--nproc` builds, leaves minigpt's options
    alone (without `--` it takes `--run` for an abbreviation of `--run-path`)."""
    from torch.distributed.run import get_args_parser

    args = ["train", "x.txt", "--run", "r", "--out", "o", "--resume", "-h", "--", "--m"]
    command = torchrun_command(3, args)
    assert command[:3] == [sys.executable, "-m", "torch.distributed.run"]
    parsed = get_args_parser().parse_args(command[3:])
    assert parsed.module and parsed.standalone and parsed.nproc_per_node == "3"
    assert parsed.training_script == "minigpt"
    assert parsed.training_script_args == args


@pytest.mark.parametrize("grad_accum", [1, 2])
def test_two_processes_equal_one_process_accumulating(runs: Runs, grad_accum: int) -> None:
    """DDP's gradient average over 2 ranks x A micro-batches is the accumulated mean
    over the same 2A micro-batches in one process: the same weights after 8 steps, bit
    for bit with A = 1 and up to the order of the sums (~1e-8 here) with A = 2.
    (A = 2 goes through `minigpt train --nproc 2`, see the next test.)"""
    if grad_accum == 1:
        two = runs.torchrun(1)
    else:
        two = runs.launched()
    one = runs.single(2 * grad_accum)
    _assert_same_weights(_weights(two), _weights(one))
    # The check can fail: fewer micro-batches per step is another trajectory.
    other = _weights(runs.single(grad_accum))
    moved = max((other[k] - _weights(one)[k]).abs().max().item() for k in other)
    assert moved > 1e-4


def test_nproc_launches_and_only_rank_0_writes(runs: Runs) -> None:
    run_dir = runs.launched()
    assert [p.name for p in run_dir.parent.iterdir()] == [run_dir.name]
    assert sorted(p.name for p in run_dir.iterdir()) == ["best", "latest", "metrics.jsonl"]
    rows = _metrics(run_dir)
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 9))  # each step once
    assert [(r["step"], r.get("final", False)) for r in rows if "val_loss" in r] == [
        (4, False),
        (8, True),
    ]
    assert [r["event"] for r in rows if "event" in r] == ["start"]
    # One dashboard, rank 0's, and it says how many processes trained.
    assert runs.launch_stdout.count("done: 8 steps") == 1
    assert "2 processes" in runs.launch_stdout


def test_ctrl_c_under_nproc_stops_after_the_step_and_saves(runs: Runs) -> None:
    """Ctrl-C (SIGINT to the terminal's process group) with `--nproc 2`: every rank
    stops after the same step, rank 0 saves there, and the exit code is 130."""
    args = runs.args("interrupted", "--nproc", "2", "--max-iters", "1000000")
    args[args.index("--eval-interval") + 1] = "1000000"
    metrics = runs.out / "interrupted" / "metrics.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "minigpt", *args], cwd=runs.root, env=_env(),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (metrics.exists() and '"loss"' in metrics.read_text(encoding="utf-8")):
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr
            time.sleep(0.1)
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130, stderr[-3000:]
    stop = _metrics(metrics.parent)[-1]
    assert stop["event"] == "stop" and stop["reason"] == "interrupted"
    saved = json.loads((metrics.parent / "latest" / "config.json").read_text(encoding="utf-8"))
    assert saved["step"] == stop["step"]
    steps = [r["step"] for r in _metrics(metrics.parent) if "loss" in r]
    assert steps == list(range(1, stop["step"] + 1))
    assert stdout.count("stopped (interrupted)") == 1


WORKER = """
    import sys
    from pathlib import Path

    from minigpt.training import distributed
    from minigpt.cli.signals import GracefulStop
    from minigpt.config import GPTConfig, TrainConfig
    from minigpt.data.dataset import load_dataset
    from minigpt.training.trainer import train


    def main() -> None:
        data_dir, run_dir = Path(sys.argv[1]), Path(sys.argv[2])
        ctx = distributed.from_env()
        distributed.init(ctx)
        dataset = load_dataset(data_dir)
        model = GPTConfig(
            vocab_size=dataset.tokenizer.vocab_size, block_size=32, n_layer=1, n_head=2,
            n_embd=32, dropout=0.0,
        )
        config = TrainConfig(
            batch_size=4, max_iters=10_000, eval_interval=10_000, sample_every=0, device="cpu"
        )
        calls = 0
        try:
            # As in `minigpt train`: SIGTERM only asks for a stop after the step.
            with GracefulStop(lambda message: None) as stop:

                def should_stop() -> bool:
                    nonlocal calls
                    calls += 1  # once per step, on every rank
                    if ctx.rank == 1 and calls == 3:
                        raise RuntimeError("injected failure on rank 1 at step 3")
                    return stop()

                train(model, config, dataset, run_dir, should_stop=should_stop, ctx=ctx)
        finally:
            distributed.shutdown(ctx)


    main()
"""


def test_a_failing_rank_ends_the_job(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    text = SHAKESPEARE.read_text(encoding="utf-8")[:30_000]
    build_dataset(text.encode(), DataConfig(tokenizer="char"), data_dir, source="small.txt")
    script = tmp_path / "worker.py"
    script.write_text(textwrap.dedent(WORKER), encoding="utf-8")
    command = [*TORCHRUN, "--nproc_per_node=2", str(script), str(data_dir), str(tmp_path / "run")]
    start = time.monotonic()
    done = _run(command, tmp_path)
    elapsed = time.monotonic() - start
    assert done.returncode != 0
    assert "injected failure on rank 1 at step 3" in done.stdout + done.stderr
    assert elapsed < 60, f"the job took {elapsed:.0f} s to end after a rank failed"


def test_resume_with_another_number_of_processes(runs: Runs) -> None:
    """2 processes x 1 micro-batch stop at step 4; 1 process x 2 micro-batches finishes.
    Every step draws the same 2 micro-batches (one draw from the saved data generator),
    gradients are averaged the same way and dropout is off, so the resumed run ends on
    the weights of a 1 x 2 run never stopped."""
    name = "resumed"
    _ok([*TORCHRUN_2, *runs.args(name, "--stop-at", "4")], runs.root)
    run_dir = runs.out / name
    assert [r for r in _metrics(run_dir) if "event" in r][-1]["reason"] == "stop_at"
    resume = ["train", str(runs.text), "--out", str(runs.out), "--cache-dir"]
    resume += [str(runs.root / "cache"), "--run", name, "--resume", "--grad-accum", "2"]
    _ok([sys.executable, "-m", "minigpt", *resume], runs.root)

    rows = _metrics(run_dir)
    (event,) = [r for r in rows if r.get("event") == "resume"]
    assert event["step"] == 4
    assert event["changes"]["processes"] == [2, 1]
    assert event["changes"]["grad_accum"] == [1, 2]
    assert [r["step"] for r in rows if "loss" in r] == list(range(1, 9))
    _assert_same_weights(_weights(run_dir), _weights(runs.single(2)))
