"""pytest-benchmark suite of the network's kernels (``gpucops.kernels``): the edge-feature shift
(forward, forward + backward), the node and edge costs with cost dropout, and the B·N
perturbation of the layer's backward — the Triton kernels on CUDA, their torch references on
every device (the cases of ``benchmarks/kernels.py``, which adds bandwidths).

Shapes: on CUDA ``benchmarks/kernels.py``'s (B = 8, C = 256, 256×512, K = 19); on the CPU
B = 1, C = 32, 128×256 (the torch references at the GPU shapes take seconds and GBs there).
Quality: a Triton kernel must agree with its torch reference (max |difference| ≤ 1e-4 · max
|reference|, recorded); a torch reference is the definition, so it records its output's size
and checks it is finite.
"""

from __future__ import annotations

import pytest
import torch
from suite import CITYSCAPES_DISTANCES, DEVICES, load_script

SHAPES = {"cpu": (1, 32, (128, 256)), "cuda": (8, 256, (256, 512))}  # batch, channels, grid
NAMES = ["shift-forward", "shift-forward-backward", "node-costs", "edge-costs", "perturbation"]
RUNS = [(device, "torch") for device in DEVICES] + (
    [("cuda", "triton")] if "cuda" in DEVICES else []
)
TOLERANCE = 1e-4  # float32 sums in another order: ~1e-6 relative; a wrong index: order 1


def _tensors(result: object) -> list[torch.Tensor]:
    if isinstance(result, torch.Tensor):
        return [result.detach()]
    return [t.detach() for t in result]


@pytest.mark.parametrize("index", range(len(NAMES)), ids=NAMES)
@pytest.mark.parametrize(("device", "implementation"), RUNS, ids=[f"{d}-{i}" for d, i in RUNS])
def test_kernel(timer, smoke, device, implementation, index):
    batch, channels, size = (1, 2, (9, 20)) if smoke else SHAPES[device]
    distances = (1, 4) if smoke else CITYSCAPES_DISTANCES
    cases = load_script("kernels").kernel_cases(device, batch, channels, 19, size, distances, 5)
    _, kernel, reference, moved = cases[index]
    result = _tensors(timer(kernel if implementation == "triton" else reference, rounds=50))
    timer.record(bytes_moved=moved, outputs=sum(t.numel() for t in result))
    assert all(torch.isfinite(t).all() for t in result)
    if implementation == "triton":
        expected = _tensors(reference())
        error = max(float((a - b).abs().max()) for a, b in zip(result, expected, strict=True))
        scale = max(float(b.abs().max()) for b in expected)
        timer.record(max_abs_difference=error, reference_max=scale)
        assert error <= TOLERANCE * scale, (error, scale)
