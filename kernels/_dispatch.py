"""Where a kernel runs: the Triton kernel on CUDA tensors (or on CPU tensors under the Triton
interpreter, as CI runs it), the torch reference elsewhere."""

from __future__ import annotations

import os

import torch

__all__ = ["IMPLEMENTATIONS", "INTERPRETING", "use_triton"]

IMPLEMENTATIONS = ("auto", "triton", "torch")

# @triton.jit reads TRITON_INTERPRET when a kernel is defined, so the mode is fixed at import:
# set it before importing gpucops.kernels (tests/conftest.py does when there is no CUDA device).
INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0", "false", "False")


def use_triton(tensor: torch.Tensor, implementation: str) -> bool:
    """True to run the Triton kernel on ``tensor``'s device, False for the torch reference.

    ``auto``: Triton on CUDA tensors (and on CPU tensors when interpreting), else torch;
    ``triton``: always Triton (an error where it cannot run); ``torch``: the reference.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    if implementation == "torch":
        return False
    runnable = tensor.is_cuda or (INTERPRETING and tensor.device.type == "cpu")
    if implementation == "triton" and not runnable:
        raise ValueError(
            f"implementation='triton' needs CUDA tensors or TRITON_INTERPRET=1 set before "
            f"gpucops.kernels is imported; got a tensor on {tensor.device}"
        )
    return runnable
