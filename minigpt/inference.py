"""Getting a trained model ready to generate: eval mode, no gradients, fast CPU matmuls.

Decoding one token at batch 1 multiplies a vector by every weight matrix: the time
goes into reading the weights from memory, not into arithmetic. PyTorch's default
CPU path for `nn.Linear` (an MKL matrix-vector product) reads them at roughly half
the speed the memory allows on a 2-core machine. oneDNN's linear with a weight
"prepacked" into its blocked layout reads them about 1.5x faster (see
benchmarks/generate_speed.py), so on the CPU every `nn.Linear` is swapped for a
`PackedLinear` holding the same values in that layout. The model computes the same
function (to float rounding); it can no longer be trained or saved, which generation
never needs.
"""

from __future__ import annotations

import os

import torch
import torch.nn as nn

from minigpt.errors import GenerationError
from minigpt.model import GPT


class PackedLinear(nn.Module):
    """y = x W^T + b through oneDNN, with W prepacked once (inference only)."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach()
        self.out_features = weight.size(0)
        self.packed = torch.ops.mkldnn._reorder_linear_weight(weight, 1)  # batch-1 layout
        self.bias = None if linear.bias is None else linear.bias.detach()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.reshape(-1, x.size(-1))  # (B*T, in)
        y = torch.ops.mkldnn._linear_pointwise(rows, self.packed, self.bias, "none", [], "")
        return y.view(*x.shape[:-1], self.out_features)  # (B, T, out)


def prepare_for_inference(model: GPT) -> str:
    """Put `model` in eval mode without gradients; on the CPU, pack its linear layers.

    Returns how the matmuls will run ("onednn-packed" or "default"), for the record.
    """
    model.eval()
    model.requires_grad_(False)
    weight = model.wte.weight
    if weight.device.type != "cpu" or weight.dtype != torch.float32 or not _onednn_works():
        return "default"
    with torch.no_grad():
        for module in list(model.modules()):
            for name, child in list(module.named_children()):
                if isinstance(child, nn.Linear):
                    setattr(module, name, PackedLinear(child))
    return "onednn-packed"


def _onednn_works() -> bool:
    """Whether this PyTorch build has oneDNN's packed linear and it gives the right answer."""
    if not torch.backends.mkldnn.is_available():
        return False
    try:
        probe = nn.Linear(8, 4)
        x = torch.randn(3, 8)
        with torch.no_grad():
            return torch.allclose(PackedLinear(probe)(x), probe(x), atol=1e-5)
    except (RuntimeError, AttributeError):
        return False


def check_kv_cache_fits(model: GPT, batch_size: int) -> None:
    """Refuse, with a hint, a KV cache for `batch_size` sequences that
    the machine's free memory cannot hold (the kernel would kill the process instead
    of raising). Checked for the CPU (from /proc's view of free pages) and CUDA."""
    config, weight = model.config, model.wte.weight
    needed = 2 * config.n_layer * batch_size * config.block_size * config.n_embd
    needed *= weight.element_size()
    free = _free_memory(weight.device)
    if free is not None and needed > free:
        raise GenerationError(
            f"out of memory: the KV cache for {batch_size} sequences needs "
            f"{needed / 2**30:.1f} GiB, more than the {free / 2**30:.1f} GiB free; "
            "use fewer --num-samples"
        )


def _free_memory(device: torch.device) -> int | None:
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):  # not every platform has these
        return None
