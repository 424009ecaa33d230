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

import torch
import torch.nn as nn

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
    if model.device.type != "cpu" or model.dtype != torch.float32 or not _onednn_works():
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
