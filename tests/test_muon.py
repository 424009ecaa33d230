"""`--optimizer muon`: the Newton-Schulz step, the AdamW half, training and exact resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from minigpt.config import GPTConfig, TrainConfig
from minigpt.model import GPT
from minigpt.training.muon import MuonAdamW, orthogonalize
from minigpt.training.optim import make_optimizer, set_lr
from tests.test_resume import TINY, assert_same_weights, per_step, run_ok


@pytest.mark.parametrize("shape", [(32, 96), (96, 32), (48, 48)])
def test_orthogonalize_evens_out_the_singular_values(shape: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], generator=gen))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], generator=gen))
    k = min(shape)
    spread = torch.logspace(0, -2, k)  # condition number 100
    g = u[:, :k] @ torch.diag(spread) @ v[:, :k].T
    s = torch.linalg.svdvals(orthogonalize(g))
    # Five quintic iterations put every singular value near 1 (within Muon's band).
    assert s.min() > 0.5 and s.max() < 1.3, s
    assert orthogonalize(g).shape == g.shape


def test_the_adamw_groups_update_exactly_as_torch_adamw() -> None:
    torch.manual_seed(0)
    a = torch.nn.Parameter(torch.randn(5, 3))
    b = torch.nn.Parameter(a.detach().clone())
    ours = MuonAdamW([{"params": [a], "weight_decay": 0.1}], lr=0.01, betas=(0.9, 0.99))
    theirs = torch.optim.AdamW([{"params": [b], "weight_decay": 0.1}], lr=0.01, betas=(0.9, 0.99))
    for step in range(5):
        grad = torch.randn(5, 3, generator=torch.Generator().manual_seed(step))
        a.grad, b.grad = grad.clone(), grad.clone()
        ours.step()
        theirs.step()
    torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-7)


def test_muon_takes_the_block_matrices_and_runs_at_its_own_rate() -> None:
    model = GPT(GPTConfig(vocab_size=40, n_layer=2, n_head=2, n_embd=16, block_size=8))
    config = TrainConfig(optimizer="muon", lr=1e-3, muon_lr=0.02)
    optimizer = make_optimizer(model, config, torch.device("cpu"))
    muon = [g for g in optimizer.param_groups if g["muon"]]
    names = {id(p): n for n, p in model.named_parameters()}
    taken = {names[id(p)] for g in muon for p in g["params"]}
    assert taken and all(n.startswith("h.") and n.endswith("weight") for n in taken)
    assert "wte.weight" not in taken and not any("ln" in n for n in taken)
    set_lr(optimizer, 5e-4)  # the schedule's rate, half the peak
    assert muon[0]["lr"] == pytest.approx(0.01)
    assert all(g["lr"] == 5e-4 for g in optimizer.param_groups if not g["muon"])


def test_muon_trains_and_resumes_bit_identical(tmp_path: Path) -> None:
    corpus = tmp_path / "input.txt"
    corpus.write_text("to be or not to be, that is the question.\n" * 200)
    args = ["train", corpus, *TINY, "--optimizer", "muon", "--max-iters", "60",
            "--eval-interval", "20", "--out", tmp_path]  # fmt: skip
    whole = run_ok(*args, "--run", "whole")
    run_ok(*args, "--run", "paused", "--stop-at", "30")
    run_ok("train", corpus, "--out", tmp_path, "--run", "paused", "--resume")
    losses = [row[1] for row in per_step(tmp_path / "whole") if row[1] is not None]
    assert losses[-1] < losses[0] - 0.2, whole.stdout  # it learns (still warming up)
    assert per_step(tmp_path / "paused") == per_step(tmp_path / "whole")
    assert_same_weights(tmp_path / "paused", tmp_path / "whole")


def test_another_optimizer_on_resume_starts_afresh_and_says_so(tmp_path: Path) -> None:
    corpus = tmp_path / "input.txt"
    corpus.write_text("to be or not to be, that is the question.\n" * 200)
    run_ok("train", corpus, *TINY, "--max-iters", "40", "--eval-interval", "20",
           "--out", tmp_path, "--run", "r", "--stop-at", "20")  # fmt: skip
    done = run_ok("train", corpus, "--out", tmp_path, "--resume", tmp_path / "r",
                  "--optimizer", "muon")  # fmt: skip
    assert "optimizer adamw -> muon" in done.stdout
