"""Affinity edge-feature shift S_d (supplementary eq. 10/11): kernel, launcher, reference.

For a distance d > 1 the affinity classifier of COPS reads, at every map position, the difference
of the features at the two end-points of the edge stored there (the grid layout of
:mod:`gpucops.grid`: ⌈d/2⌉ before, ⌊d/2⌋ after):

    row[b, c, r, x] = f[b, c, r + ⌊d/2⌋, x] − f[b, c, r − ⌈d/2⌉, x]   for ⌈d/2⌉ ≤ r < H − ⌊d/2⌋
    col[b, c, r, x] = f[b, c, r, x + ⌊d/2⌋] − f[b, c, r, x − ⌈d/2⌉]   for ⌈d/2⌉ ≤ x < W − ⌊d/2⌋

and 0 elsewhere (a d ≥ H or ≥ W gives an all-zero map). The classifier input is
``cat(row, col)`` along channels. The Triton forward computes every distance in one launch; the
backward gathers, for every input position, its two contributions per distance and direction
(no atomics, so it is deterministic).
"""

from __future__ import annotations

import numbers

import torch
import torch.nn.functional as F
import triton
import triton.language as tl

from ._dispatch import INTERPRETING, checked_grid, use_triton

__all__ = ["edge_feature_shift", "edge_feature_shift_reference"]

# the interpreter pays per program, so it gets bigger tiles (the tests use shapes that are not
# multiples of either)
GPU_TILE = (16, 64)
BLOCK_H, BLOCK_W = (32, 128) if INTERPRETING else GPU_TILE


@triton.jit
def _shift_forward_kernel(
    f_ptr, out_ptr, dist_ptr, B, C, H, W,
    COMPUTE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    # one program: a tile of output map ((distance · B + b) · 2 + direction) · C + c
    plane = tl.program_id(0).to(tl.int64)
    c = plane % C
    direction = (plane // C) % 2
    b = (plane // (2 * C)) % B
    d = tl.load(dist_ptr + plane // (2 * C * B))
    before = (d + 1) // 2
    after = d // 2
    rows = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    cols = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    inside = (rows < H) & (cols < W)
    # one formula for both directions: the step along the axis, the position on it, its length
    step = tl.where(direction == 0, W, 1)
    pos = tl.where(direction == 0, rows, cols)
    length = tl.where(direction == 0, H, W)
    valid = inside & (pos >= before) & (pos < length - after)
    here = f_ptr + (b * C + c) * H * W + rows * W + cols
    # half types subtract in float32 and round once, as torch does
    high = tl.load(here + after * step, mask=valid, other=0.0).to(COMPUTE)
    low = tl.load(here - before * step, mask=valid, other=0.0).to(COMPUTE)
    out = out_ptr + plane * H * W + rows * W + cols
    tl.store(out, tl.where(valid, high - low, 0.0).to(out_ptr.dtype.element_ty), mask=inside)


@triton.jit
def _shift_backward_kernel(
    grad_ptr, out_ptr, dist_ptr, num_distances, B, C, H, W,
    COMPUTE: tl.constexpr, BLOCK_H: tl.constexpr, BLOCK_W: tl.constexpr,
):  # fmt: skip
    # one program: a tile of the feature gradient of plane b · C + c
    plane = tl.program_id(0).to(tl.int64)
    c = plane % C
    b = plane // C
    rows = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)[:, None]
    cols = tl.program_id(2) * BLOCK_W + tl.arange(0, BLOCK_W)[None, :]
    inside = (rows < H) & (cols < W)
    total = tl.zeros((BLOCK_H, BLOCK_W), dtype=COMPUTE)
    for i in range(num_distances):
        d = tl.load(dist_ptr + i)
        before = (d + 1) // 2
        after = d // 2
        for direction in tl.static_range(2):
            step = tl.where(direction == 0, W, 1)
            pos = tl.where(direction == 0, rows, cols)
            length = tl.where(direction == 0, H, W)
            map_index = ((i * B + b) * 2 + direction) * C + c
            here = grad_ptr + map_index * H * W + rows * W + cols
            # f here is the "high" end of the edge stored `after` before it …
            plus = inside & (pos - after >= before) & (pos - after < length - after)
            total += tl.load(here - after * step, mask=plus, other=0.0).to(COMPUTE)
            # … and the "low" end of the edge stored `before` after it
            minus = inside & (pos + before >= before) & (pos + before < length - after)
            total -= tl.load(here + before * step, mask=minus, other=0.0).to(COMPUTE)
    out = out_ptr + plane * H * W + rows * W + cols
    tl.store(out, total.to(out_ptr.dtype.element_ty), mask=inside)


def launch_grid(
    planes: int, height: int, width: int, tile: tuple[int, int] = (BLOCK_H, BLOCK_W)
) -> tuple[int, int, int]:
    """The grid of both kernels: planes along x (2^31 − 1), row tiles along y and column tiles
    along z (65535 each: 1M rows and 4M columns on a GPU)."""
    grid = (planes, triton.cdiv(height, tile[0]), triton.cdiv(width, tile[1]))
    return checked_grid(grid, "edge_feature_shift")


def _compute_type(dtype: torch.dtype) -> tl.dtype:
    """float64 stays float64; every other float is computed in float32."""
    return tl.float64 if dtype == torch.float64 else tl.float32


def _launch_forward(features: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = features.shape
    out = torch.empty(
        (distances.numel(), batch, 2 * channels, height, width),
        dtype=features.dtype,
        device=features.device,
    )
    if out.numel():
        _shift_forward_kernel[launch_grid(out.numel() // (height * width), height, width)](
            features, out, distances, batch, channels, height, width,
            COMPUTE=_compute_type(features.dtype), BLOCK_H=BLOCK_H, BLOCK_W=BLOCK_W,
        )  # fmt: skip
    return out


def _launch_backward(grad: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
    num_distances, batch, two_channels, height, width = grad.shape
    channels = two_channels // 2
    out = torch.empty((batch, channels, height, width), dtype=grad.dtype, device=grad.device)
    if out.numel():
        _shift_backward_kernel[launch_grid(batch * channels, height, width)](
            grad, out, distances, num_distances, batch, channels, height, width,
            COMPUTE=_compute_type(grad.dtype), BLOCK_H=BLOCK_H, BLOCK_W=BLOCK_W,
        )  # fmt: skip
    return out


class _EdgeFeatureShift(torch.autograd.Function):
    @staticmethod
    def forward(ctx, features: torch.Tensor, distances: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(distances)
        return _launch_forward(features.contiguous(), distances)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (distances,) = ctx.saved_tensors
        return _launch_backward(grad.contiguous(), distances), None


def _check(features: object, distances: object) -> tuple[int, ...]:
    if not isinstance(features, torch.Tensor):
        raise ValueError(f"features must be a torch.Tensor, got {type(features).__name__}")
    if features.dim() != 4:
        raise ValueError(f"features must be [B, C, H, W], got shape {tuple(features.shape)}")
    if not features.is_floating_point():
        raise ValueError(f"features must be a floating-point tensor, got {features.dtype}")
    if isinstance(distances, torch.Tensor):
        distances = distances.tolist()
    if isinstance(distances, (str, bytes)) or not hasattr(distances, "__iter__"):
        raise ValueError(f"distances must be a sequence of integers > 1, got {distances!r}")
    distances = tuple(distances)
    if not distances:
        raise ValueError("distances must not be empty")
    for d in distances:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 2:
            raise ValueError(
                f"distances must hold integers > 1 (d = 1 reads the features directly), got {d!r}"
            )
    return tuple(int(d) for d in distances)


def edge_feature_shift_reference(
    features: torch.Tensor, distances: tuple[int, ...]
) -> tuple[torch.Tensor, ...]:
    """The torch reference of :func:`edge_feature_shift` (pad, slice, subtract, concatenate)."""
    height, width = features.shape[-2:]
    maps = []
    for d in _check(features, distances):
        before, after = (d + 1) // 2, d // 2
        # a d ≥ H (W) pads an empty slice to all zeros, still a function of the features
        if d < height:
            row = F.pad(features[:, :, d:] - features[:, :, :-d], (0, 0, before, after))
        else:
            row = F.pad(features[:, :, :0], (0, 0, 0, height))
        if d < width:
            col = F.pad(features[..., d:] - features[..., :-d], (before, after))
        else:
            col = F.pad(features[..., :0], (0, width))
        maps.append(torch.cat([row, col], dim=1))
    return tuple(maps)


def edge_feature_shift(
    features: torch.Tensor, distances: tuple[int, ...], implementation: str = "auto"
) -> tuple[torch.Tensor, ...]:
    """Centre-matched feature differences S_d for each distance d > 1, differentiable.

    Args:
        features: ``[B, C, H, W]`` float (float32, bfloat16, float16 or float64).
        distances: integers > 1 (the distances of a COPS model but d = 1).
        implementation: ``auto`` (Triton on CUDA tensors, the torch reference on CPU tensors),
            ``triton`` or ``torch`` (see :mod:`gpucops.kernels`).
    Returns:
        one ``[B, 2C, H, W]`` tensor per distance: row differences in channels ``[0, C)``, column
        differences in ``[C, 2C)``, 0 where an end-point falls outside the image. With Triton
        they are views into one buffer.
    """
    distances = _check(features, distances)
    if not use_triton(features, implementation):
        return edge_feature_shift_reference(features, distances)
    distance_tensor = torch.tensor(distances, dtype=torch.int64, device=features.device)
    return tuple(_EdgeFeatureShift.apply(features, distance_tensor).unbind(0))
