"""Solver costs from network logits, with cost dropout: kernel, launcher, reference.

COPS feeds the solver (official code, ``aabbas90/COPS`` branch ``camera_ready``, in
``affinityNet/panoptic_affinity/``: ``PanopticAffinityAMWC.forward`` of
``panoptic_seg_affinity.py``, ``ComputeMulticutCosts`` and ``DropoutPixels`` of ``utils.py``)

    node_costs   = (a_s · (−S)   + b_s) · keep_pixel        S  [B, K, H, W] semantic logits
    edge_costs_d = (|a_d| · (−A_d) + b_d) · keep_edge       A_d [B, 2, H, W] affinity logits

with learnable scalars a_s, b_s and one (a_d, b_d) per distance. In training, cost dropout zeroes
all class costs of a pixel with probability p (``keep_pixel``) and single edge costs with
probability p (``keep_edge``), without rescaling (p = 0.1 in the supplementary of Abbas &
Swoboda, NeurIPS 2021, arXiv 2106.03188). The masks come from Triton's counter-based Philox
generator, ``tl.rand(seed, offset)`` (offset = the pixel's index ``b·H·W + h·W + w`` for nodes,
the element's flat index for edges), so the backward regenerates them instead of storing them,
and :func:`philox_uniform` reproduces them bit for bit in torch.

One kernel serves both: ``out[b, c] = (scale[c // group] · (−x[b, c]) + bias[c // group]) · keep``.
Its backward writes the logits' gradient and per-program partial sums for the scalars, which torch
adds up (deterministic, no atomics).
"""

from __future__ import annotations

import numbers

import torch
import triton
import triton.language as tl

from ._dispatch import INTERPRETING, checked_grid, use_triton

__all__ = [
    "edge_costs_from_logits",
    "node_costs_from_logits",
    "philox_uniform",
]

GPU_BLOCK = 1024
# the interpreter pays per program, so it gets bigger blocks
BLOCK = 4096 if INTERPRETING else GPU_BLOCK
_MASK32 = 0xFFFFFFFF
_CHUNK = 1 << 16


def _mul_parts(a: int, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """High and low 32 bits of ``a · b`` for a 32-bit constant and uint32 values held in int64:
    the product fits 64 bits, and int64 multiplication wraps, so its bit pattern is exact."""
    product = a * b
    return (product >> 32) & _MASK32, product & _MASK32


def philox_uniform(seed: int, offsets: torch.Tensor) -> torch.Tensor:
    """``tl.rand(seed, offsets)`` in torch: float32 uniforms in [0, 1), bit for bit.

    Philox-4x32 with 10 rounds on the counter (offset low, offset high, 0, 0) and the key
    (seed low, seed high); the first output word becomes a float as in Triton. Computed in
    chunks that stay in cache (the rounds are many small integer operations).
    """
    flat = offsets.to(torch.int64).flatten()
    out = torch.empty(flat.shape, dtype=torch.float32, device=flat.device)
    for start in range(0, flat.numel(), _CHUNK):
        out[start : start + _CHUNK] = _philox_chunk(seed, flat[start : start + _CHUNK])
    return out.view(offsets.shape)


def _philox_chunk(seed: int, offsets: torch.Tensor) -> torch.Tensor:
    c0, c1 = offsets & _MASK32, (offsets >> 32) & _MASK32
    c2, c3 = torch.zeros_like(c0), torch.zeros_like(c0)
    k0, k1 = seed & _MASK32, (seed >> 32) & _MASK32
    for _ in range(10):
        high_b, low_b = _mul_parts(0xCD9E8D57, c2)
        high_a, low_a = _mul_parts(0xD2511F53, c0)
        c0, c1, c2, c3 = high_b ^ c1 ^ k0, low_b, high_a ^ c3 ^ k1, low_a
        k0, k1 = (k0 + 0x9E3779B9) & _MASK32, (k1 + 0xBB67AE85) & _MASK32
    signed = torch.where(c0 >= 2**31, c0 - 2**32, c0)
    signed = torch.where(signed < 0, -signed - 1, signed)
    return signed.to(torch.float32) * torch.tensor(4.6566127342e-10, dtype=torch.float32)


@triton.jit
def _affine_dropout_forward(
    x_ptr, out_ptr, scale_ptr, bias_ptr, C, HW, group, p, seed,
    PER_PIXEL: tl.constexpr, COMPUTE: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    plane = tl.program_id(1).to(tl.int64)  # b · C + c
    index = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    inside = index < HW
    channel_group = (plane % C) // group
    scale = tl.load(scale_ptr + channel_group).to(COMPUTE)
    bias = tl.load(bias_ptr + channel_group).to(COMPUTE)
    x = tl.load(x_ptr + plane * HW + index, mask=inside, other=0.0).to(COMPUTE)
    offset = tl.where(PER_PIXEL, (plane // C) * HW + index, plane * HW + index)
    keep = tl.rand(seed, offset) >= p
    out = tl.where(keep, scale * -x + bias, 0.0)
    tl.store(out_ptr + plane * HW + index, out.to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _affine_dropout_backward(
    grad_ptr, x_ptr, scale_ptr, grad_x_ptr, partial_ptr, C, HW, group, p, seed, num_blocks,
    PER_PIXEL: tl.constexpr, COMPUTE: tl.constexpr, BLOCK: tl.constexpr,
):  # fmt: skip
    plane = tl.program_id(1).to(tl.int64)
    block = tl.program_id(0).to(tl.int64)
    index = block * BLOCK + tl.arange(0, BLOCK)
    inside = index < HW
    scale = tl.load(scale_ptr + (plane % C) // group).to(COMPUTE)
    grad = tl.load(grad_ptr + plane * HW + index, mask=inside, other=0.0).to(COMPUTE)
    x = tl.load(x_ptr + plane * HW + index, mask=inside, other=0.0).to(COMPUTE)
    offset = tl.where(PER_PIXEL, (plane // C) * HW + index, plane * HW + index)
    kept = tl.where((tl.rand(seed, offset) >= p) & inside, grad, 0.0)
    tl.store(grad_x_ptr + plane * HW + index, (-scale * kept).to(grad_x_ptr.dtype.element_ty),
             mask=inside)  # fmt: skip
    # partial sums for the scalars of this plane: d/d scale = Σ kept·(−x), d/d bias = Σ kept
    partial = partial_ptr + 2 * (plane * num_blocks + block)
    tl.store(partial, tl.sum(kept * -x, axis=0))
    tl.store(partial + 1, tl.sum(kept, axis=0))


def _compute_type(dtype: torch.dtype) -> tl.dtype:
    return tl.float64 if dtype == torch.float64 else tl.float32


def launch_grid(planes: int, pixels: int, block: int = BLOCK) -> tuple[int, int]:
    """The grid of both kernels: blocks of a plane along x (2^31 − 1 of them), the B·C planes
    along y (at most 65535; blocks along y stopped at 67 M pixels)."""
    return checked_grid((triton.cdiv(pixels, block), planes), "cost kernels")


class _AffineDropout(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, bias, group: int, per_pixel: bool, p: float, seed: int):
        batch, channels, height, width = x.shape
        x = x.contiguous()
        out = torch.empty_like(x)
        if x.numel():
            _affine_dropout_forward[launch_grid(batch * channels, height * width)](
                x, out, scale.contiguous(), bias.contiguous(), channels, height * width, group,
                p, seed, PER_PIXEL=per_pixel, COMPUTE=_compute_type(x.dtype), BLOCK=BLOCK,
            )  # fmt: skip
        ctx.save_for_backward(x, scale)
        ctx.settings = (group, per_pixel, p, seed)
        return out

    @staticmethod
    def backward(ctx, grad):
        x, scale = ctx.saved_tensors
        group, per_pixel, p, seed = ctx.settings
        batch, channels, height, width = x.shape
        num_blocks = triton.cdiv(height * width, BLOCK)
        grad_x = torch.empty_like(x)
        partial = torch.zeros(
            (batch, channels, num_blocks, 2),
            dtype=torch.float64 if x.dtype == torch.float64 else torch.float32,
            device=x.device,
        )
        if x.numel():
            _affine_dropout_backward[launch_grid(batch * channels, height * width)](
                grad.contiguous(), x, scale.contiguous(), grad_x, partial, channels,
                height * width, group, p, seed, num_blocks,
                PER_PIXEL=per_pixel, COMPUTE=_compute_type(x.dtype), BLOCK=BLOCK,
            )  # fmt: skip
        sums = partial.sum(dim=(0, 2)).view(channels // group, group, 2).sum(dim=1)
        grad_scale = sums[:, 0].to(scale.dtype)
        grad_bias = sums[:, 1].to(scale.dtype)
        return grad_x, grad_scale, grad_bias, None, None, None, None


def _affine_dropout_reference(x, scale, bias, group: int, per_pixel: bool, p: float, seed: int):
    batch, channels, height, width = x.shape
    compute = torch.float64 if x.dtype == torch.float64 else torch.float32
    out = scale.to(compute).repeat_interleave(group).view(1, -1, 1, 1) * -x.to(compute) + bias.to(
        compute
    ).repeat_interleave(group).view(1, -1, 1, 1)
    if p > 0:
        # one draw per pixel (broadcast over the channels) or per element
        planes = batch if per_pixel else batch * channels
        offsets = torch.arange(planes * height * width, device=x.device)
        keep = philox_uniform(seed, offsets) >= torch.tensor(p, dtype=torch.float32)
        out = torch.where(keep.view(batch, 1 if per_pixel else channels, height, width), out, 0.0)
    return out.to(x.dtype)


def _check_logits(logits: object, name: str) -> torch.Tensor:
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(logits).__name__}")
    if logits.dim() != 4 or not logits.is_floating_point() or logits.shape[1] == 0:
        raise ValueError(
            f"{name} must be a float [B, C, H, W] tensor with C ≥ 1, got {logits.dtype} "
            f"{tuple(logits.shape)}"
        )
    return logits


def _check_scalars(value: object, name: str, count: int, logits: torch.Tensor) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        value = torch.as_tensor(value, dtype=torch.float32, device=logits.device)
    if value.numel() != count or not value.is_floating_point():
        raise ValueError(f"{name} must hold {count} float value(s), got {tuple(value.shape)}")
    if value.device != logits.device:
        raise ValueError(f"{name} is on {value.device}, the logits on {logits.device}")
    return value.reshape(count)


def _check_dropout(dropout: object, seed: object) -> tuple[float, int]:
    if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout < 1:
        raise ValueError(f"dropout must be a probability in [0, 1), got {dropout!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**63:
        raise ValueError(f"seed must be an integer in [0, 2^63), got {seed!r}")
    return float(dropout), int(seed)


def _affine_dropout(x, scale, bias, group, per_pixel, dropout, seed, implementation):
    if use_triton(x, implementation):
        return _AffineDropout.apply(x, scale, bias, group, per_pixel, dropout, seed)
    return _affine_dropout_reference(x, scale, bias, group, per_pixel, dropout, seed)


def node_costs_from_logits(
    semantic_logits: torch.Tensor,
    scale: torch.Tensor | float = 1.0,
    bias: torch.Tensor | float = 0.0,
    dropout: float = 0.0,
    seed: int = 0,
    implementation: str = "auto",
) -> torch.Tensor:
    """``node_costs = (a_s · (−S) + b_s)``, all class costs of a pixel zeroed with probability
    ``dropout`` (no rescale), differentiable in S, a_s and b_s.

    Args:
        semantic_logits: ``S [B, K, H, W]`` float.
        scale, bias: the scalars a_s, b_s (0-d or 1-element tensors, or numbers).
        dropout: p in [0, 1); 0 (evaluation) keeps every pixel.
        seed: Philox seed in [0, 2^63); the mask of pixel (b, h, w) is
            ``philox_uniform(seed, b·H·W + h·W + w) < p``.
        implementation: ``auto``, ``triton`` or ``torch`` (see :mod:`gpucops.kernels`).
    Returns:
        ``[B, K, H, W]`` node costs, dtype of the logits.
    """
    logits = _check_logits(semantic_logits, "semantic_logits")
    scale = _check_scalars(scale, "scale", 1, logits)
    bias = _check_scalars(bias, "bias", 1, logits)
    dropout, seed = _check_dropout(dropout, seed)
    return _affine_dropout(
        logits, scale, bias, logits.shape[1], True, dropout, seed, implementation
    )


def edge_costs_from_logits(
    affinity_logits: torch.Tensor,
    scales: torch.Tensor,
    biases: torch.Tensor,
    dropout: float = 0.0,
    seed: int = 0,
    implementation: str = "auto",
) -> torch.Tensor:
    """``edge_costs_d = |a_d| · (−A_d) + b_d`` per distance d, single edge costs zeroed with
    probability ``dropout`` (no rescale), differentiable in A, a and b.

    Args:
        affinity_logits: ``A [B, 2·|D|, H, W]`` float (channels 2i, 2i+1: row and col maps of
            distance i, the layout of ``edge_costs``); a high logit = "cut" (repulsive).
        scales, biases: ``[|D|]`` a_d and b_d.
        dropout: p in [0, 1).
        seed: Philox seed; the mask of element i (flat index of the logits) is
            ``philox_uniform(seed, i) < p``. Use another seed than the node costs'.
        implementation: ``auto``, ``triton`` or ``torch``.
    Returns:
        ``[B, 2·|D|, H, W]`` edge costs, dtype of the logits (positive = attractive).
    """
    logits = _check_logits(affinity_logits, "affinity_logits")
    if logits.shape[1] % 2:
        raise ValueError(
            f"affinity_logits must have 2·|D| channels (row and col per distance), "
            f"got {logits.shape[1]}"
        )
    num_distances = logits.shape[1] // 2
    scales = _check_scalars(scales, "scales", num_distances, logits)
    biases = _check_scalars(biases, "biases", num_distances, logits)
    dropout, seed = _check_dropout(dropout, seed)
    return _affine_dropout(logits, scales.abs(), biases, 2, False, dropout, seed, implementation)
