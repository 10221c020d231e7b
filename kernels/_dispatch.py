"""Where a kernel runs: ``auto`` picks the Triton kernel for CUDA tensors and the torch reference
for CPU tensors; ``triton`` forces the kernel, which on CPU tensors needs the Triton interpreter.

``auto`` never interprets, even with ``TRITON_INTERPRET=1``: the interpreter exists to test the
kernels without a GPU (it is orders of magnitude slower than the reference), so only explicit
``implementation="triton"`` calls — the kernel tests — pay for it."""

from __future__ import annotations

import os

import torch

__all__ = ["GRID_LIMITS", "IMPLEMENTATIONS", "INTERPRETING", "checked_grid", "use_triton"]

IMPLEMENTATIONS = ("auto", "triton", "torch")

# @triton.jit reads TRITON_INTERPRET when a kernel is defined, so the mode is fixed at import:
# set it before importing gpucops.kernels (tests/conftest.py does when there is no CUDA device).
INTERPRETING = os.environ.get("TRITON_INTERPRET", "0") not in ("", "0", "false", "False")

# The most thread blocks a CUDA grid takes in x, y and z: 2^31 − 1, 65535 and 65535 on every
# device since compute capability 3.0 (CUDA C++ Programming Guide, "Compute Capabilities",
# table "Technical Specifications per Compute Capability"). The interpreter has no such limit, so
# the launchers check their grids themselves: a clear error on any device, not a failed launch on
# a GPU alone.
GRID_LIMITS = (2**31 - 1, 65535, 65535)


def checked_grid(grid: tuple[int, ...], kernel: str) -> tuple[int, ...]:
    """``grid`` (thread blocks per axis), or a ``ValueError`` naming ``kernel`` where it exceeds
    :data:`GRID_LIMITS`."""
    for axis, (size, limit) in enumerate(zip(grid, GRID_LIMITS, strict=False)):
        if size > limit:
            raise ValueError(
                f"{kernel}: {size} thread blocks along grid axis {'xyz'[axis]}, more than CUDA's "
                f"{limit}; the input is too large for this kernel"
            )
    return grid


def use_triton(tensor: torch.Tensor, implementation: str) -> bool:
    """True to run the Triton kernel on ``tensor``'s device, False for the torch reference.

    ``auto``: Triton on CUDA tensors, the reference on every other device (interpreter or not);
    ``triton``: always Triton — on CPU tensors in the interpreter, a ``ValueError`` where that is
    off; ``torch``: the reference.
    """
    if implementation not in IMPLEMENTATIONS:
        raise ValueError(f"implementation must be one of {IMPLEMENTATIONS}, got {implementation!r}")
    if implementation != "triton":
        return implementation == "auto" and tensor.is_cuda
    if not (tensor.is_cuda or (INTERPRETING and tensor.device.type == "cpu")):
        raise ValueError(
            f"implementation='triton' needs CUDA tensors or TRITON_INTERPRET=1 set before "
            f"gpucops.kernels is imported; got a tensor on {tensor.device}"
        )
    return True
