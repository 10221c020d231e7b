"""Which implementation each public kernel function runs: ``auto`` is the torch reference on CPU
tensors (interpreter or not) and Triton on CUDA tensors; ``triton`` on CPU tensors runs in the
interpreter or names the missing setting. The kernels' results are tested in test_shift.py and
test_cost_kernels.py."""

from __future__ import annotations

import importlib

import pytest
import torch

from gpucops.kernels import (
    edge_costs_from_logits,
    edge_feature_shift,
    node_costs_from_logits,
    perturb_costs,
)

DISPATCH = importlib.import_module("gpucops.kernels._dispatch")

# each public function with the Triton kernel its forward launches (module, attribute)
CALLS = {
    "shift": (
        "gpucops.kernels.shift",
        "_shift_forward_kernel",
        lambda device, i: edge_feature_shift(torch.ones(1, 1, 4, 5, device=device), (2,), i),
    ),
    "node costs": (
        "gpucops.kernels.costs",
        "_affine_dropout_forward",
        lambda device, i: node_costs_from_logits(
            torch.ones(1, 2, 3, 4, device=device), 1.0, 0.5, 0.3, 1, i
        ),
    ),
    "edge costs": (
        "gpucops.kernels.costs",
        "_affine_dropout_forward",
        lambda device, i: edge_costs_from_logits(
            torch.ones(1, 2, 3, 4, device=device), [1.0], [0.0], 0.3, 2, i
        ),
    ),
    "perturb": (
        "gpucops.kernels.perturb",
        "_perturb_kernel",
        lambda device, i: perturb_costs(
            torch.ones(2, 3, device=device),
            torch.ones(2, 3, device=device),
            torch.ones(4, device=device),
            i,
        ),
    ),
}


class _NoLaunch:
    """Stands in for a ``@triton.jit`` kernel: launching it (``kernel[grid](...)``) fails."""

    def __getitem__(self, grid):
        raise AssertionError("the Triton kernel was launched")


def _tensors(result) -> tuple[torch.Tensor, ...]:
    return result if isinstance(result, tuple) else (result,)


def _forbid_the_kernel(monkeypatch, name: str) -> None:
    module, kernel, _ = CALLS[name]
    monkeypatch.setattr(importlib.import_module(module), kernel, _NoLaunch())


@pytest.mark.parametrize("interpreting", [False, True])
@pytest.mark.parametrize("name", sorted(CALLS))
def test_auto_on_cpu_tensors_runs_the_torch_reference(monkeypatch, name, interpreting):
    call = CALLS[name][2]
    want = call("cpu", "torch")
    monkeypatch.setattr(DISPATCH, "INTERPRETING", interpreting)
    _forbid_the_kernel(monkeypatch, name)
    got = call("cpu", "auto")
    assert all(map(torch.equal, _tensors(got), _tensors(want)))
    # the stand-in is wired: "triton" reaches it in the interpreter, and is refused without one
    if interpreting:
        with pytest.raises(AssertionError, match="launched"):
            call("cpu", "triton")
    else:
        with pytest.raises(ValueError, match="TRITON_INTERPRET=1"):
            call("cpu", "triton")


@pytest.mark.gpu
@pytest.mark.parametrize("name", sorted(CALLS))
def test_auto_on_cuda_tensors_runs_the_triton_kernel(monkeypatch, name):
    _forbid_the_kernel(monkeypatch, name)
    with pytest.raises(AssertionError, match="launched"):
        CALLS[name][2]("cuda", "auto")
