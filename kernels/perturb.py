"""Cost perturbation for the backward of the AMWC layer: kernel, launcher, reference.

The layer's backward solves, for every image b and every λ_n, the problem with costs
``c[b] + λ_n · g[b]``. This writes all B·N perturbed cost tensors in one launch, in the batched
layout the solver consumes: problem ``b·N + n``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from ._dispatch import INTERPRETING, checked_grid, use_triton

__all__ = ["perturb_costs", "perturb_costs_reference"]

GPU_BLOCK = 1024
# the interpreter pays per program, so it gets bigger blocks
BLOCK = 4096 if INTERPRETING else GPU_BLOCK


@triton.jit
def _perturb_kernel(costs_ptr, grad_ptr, lambdas_ptr, out_ptr, N, M, BLOCK: tl.constexpr):
    problem = tl.program_id(1).to(tl.int64)  # b · N + n
    index = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = index < M
    source = (problem // N) * M + index
    step = tl.load(lambdas_ptr + problem % N)
    costs = tl.load(costs_ptr + source, mask=inside, other=0.0)
    grad = tl.load(grad_ptr + source, mask=inside, other=0.0)
    tl.store(out_ptr + problem * M + index, costs + step * grad, mask=inside)


def launch_grid(problems: int, per_problem: int, block: int = BLOCK) -> tuple[int, int]:
    """The kernel's grid: blocks of a problem along x (2^31 − 1 of them: a full-resolution
    problem of 133 classes needs 272k), the B·N problems along y (at most 65535)."""
    return checked_grid((triton.cdiv(per_problem, block), problems), "perturb_costs")


def perturb_costs_reference(
    costs: torch.Tensor, grad: torch.Tensor, lambdas: torch.Tensor
) -> torch.Tensor:
    """The torch reference of :func:`perturb_costs`."""
    shape = (1, -1) + (1,) * (costs.dim() - 1)
    perturbed = costs.unsqueeze(1) + lambdas.view(shape) * grad.unsqueeze(1)
    return perturbed.reshape(-1, *costs.shape[1:])


def perturb_costs(
    costs: torch.Tensor, grad: torch.Tensor, lambdas: torch.Tensor, implementation: str = "auto"
) -> torch.Tensor:
    """``out[b·N + n] = costs[b] + lambdas[n] · grad[b]`` (no autograd: it runs in a backward).

    Args:
        costs: ``[B, ...]`` float, the costs of the forward problems.
        grad: ``[B, ...]`` incoming gradient, same shape and dtype.
        lambdas: ``[N]`` perturbation strengths, same dtype.
        implementation: ``auto``, ``triton`` or ``torch`` (see :mod:`gpucops.kernels`).
    Returns:
        ``[B·N, ...]`` perturbed costs.
    """
    for name, value in (("costs", costs), ("grad", grad), ("lambdas", lambdas)):
        if not isinstance(value, torch.Tensor) or not value.is_floating_point():
            raise ValueError(f"{name} must be a float torch.Tensor, got {value!r:.80}")
    if costs.dim() < 1 or grad.shape != costs.shape:
        raise ValueError(
            f"grad must have the shape of costs [B, ...]: {tuple(grad.shape)} vs "
            f"{tuple(costs.shape)}"
        )
    if lambdas.dim() != 1:
        raise ValueError(f"lambdas must be [N], got shape {tuple(lambdas.shape)}")
    for name, value in (("grad", grad), ("lambdas", lambdas)):
        if value.dtype != costs.dtype or value.device != costs.device:
            raise ValueError(
                f"{name} must match costs' dtype and device ({costs.dtype}, {costs.device}), "
                f"got {value.dtype}, {value.device}"
            )
    if not use_triton(costs, implementation):
        return perturb_costs_reference(costs, grad, lambdas)
    batch, num = costs.shape[0], lambdas.numel()
    per_problem = costs[0].numel() if batch else 0
    out = torch.empty((batch * num, *costs.shape[1:]), dtype=costs.dtype, device=costs.device)
    if out.numel():
        _perturb_kernel[launch_grid(batch * num, per_problem)](
            costs.contiguous(), grad.contiguous(), lambdas.contiguous(), out, num, per_problem,
            BLOCK=BLOCK,
        )  # fmt: skip
    return out
