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


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("shape", [(32, 96), (96, 32), (48, 48)])
def test_orthogonalize_evens_out_the_singular_values(
    shape: tuple[int, int], dtype: torch.dtype
) -> None:
    gen = torch.Generator().manual_seed(0)
    u, _ = torch.linalg.qr(torch.randn(shape[0], shape[0], generator=gen))
    v, _ = torch.linalg.qr(torch.randn(shape[1], shape[1], generator=gen))
    k = min(shape)
    spread = torch.logspace(0, -2, k)  # condition number 100
    g = u[:, :k] @ torch.diag(spread) @ v[:, :k].T
    o = orthogonalize(g, dtype=dtype)  # computed in dtype, returned in g's
    s = torch.linalg.svdvals(o)
    # Five quintic iterations put every singular value near 1 (within Muon's band).
    assert s.min() > 0.5 and s.max() < 1.3, s
    assert o.shape == g.shape and o.dtype == g.dtype


def test_a_batch_is_orthogonalised_matrix_by_matrix() -> None:
    gen = torch.Generator().manual_seed(1)
    for shape in ((3, 8, 20), (3, 20, 8)):
        batch = torch.randn(shape, generator=gen)
        batch[1] *= 100  # each matrix is normalised on its own, not by the batch's norm
        each = torch.stack([orthogonalize(m) for m in batch])
        torch.testing.assert_close(orthogonalize(batch), each, rtol=1e-4, atol=1e-5)


def swiglu_model() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=40, n_layer=1, n_head=2, n_embd=16, block_size=8,
                         mlp="swiglu", bias=False))  # fmt: skip


def test_each_matrix_of_a_fused_parameter_moves_on_its_own() -> None:
    """[W^Q; W^K; W^V] and [W^gate; W^up] are orthogonalised part by part: a part whose
    gradient is 10^4 times smaller than its neighbour's still moves by Muon's full step."""
    model = swiglu_model()
    config = TrainConfig(optimizer="muon", muon_lr=0.01, weight_decay=0.0)
    optimizer = make_optimizer(model, config, torch.device("cpu"))
    set_lr(optimizer, config.lr)
    gen = torch.Generator().manual_seed(2)
    for p in model.parameters():
        p.grad = torch.randn(p.shape, generator=gen)
    attn, mlp = model.h[0].attn.c_attn.weight, model.h[0].mlp.c_fc.weight
    attn.grad[:16] *= 100  # the query rows
    attn.grad[16:32] *= 0.01  # the key rows
    mlp.grad[: mlp.size(0) // 2] *= 0.01  # the gate rows
    before = {"attn": attn.detach().clone(), "mlp": mlp.detach().clone()}
    optimizer.step()
    for name, p, rows in (("attn", attn, (16, 16, 16)), ("mlp", mlp, (mlp.size(0) // 2,) * 2)):
        for i, delta in enumerate((p.detach() - before[name]).split(rows)):
            scale = max(1.0, delta.size(0) / delta.size(1)) ** 0.5
            s = torch.linalg.svdvals(delta / (config.muon_lr * scale))
            assert s.min() > 0.5 and s.max() < 1.3, (name, i, s)


def test_muon_decays_its_matrices_as_adamw_does() -> None:
    model = swiglu_model()
    config = TrainConfig(optimizer="muon", muon_lr=0.02, weight_decay=0.1)
    optimizer = make_optimizer(model, config, torch.device("cpu"))
    set_lr(optimizer, config.lr)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)  # no gradient: only the decay moves the weights
    before = model.h[0].mlp.c_proj.weight.detach().clone()
    optimizer.step()
    torch.testing.assert_close(model.h[0].mlp.c_proj.weight.detach(), before * (1 - 0.02 * 0.1))


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
    assert optimizer.ns_dtype == torch.float32  # a run in fp32 orthogonalises in fp32
    bf16 = make_optimizer(model, config, torch.device("cpu"), torch.bfloat16)
    assert bf16.ns_dtype == torch.bfloat16  # a run whose matmuls are bf16: Newton-Schulz too
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
