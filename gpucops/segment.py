"""Deterministic segment reductions.

Float sums that feed decisions or reported objectives are *sorted segment sums*: values are ordered
by segment (stably) and each segment is reduced in a fixed order, so the result does not depend on
thread scheduling, unlike ``index_add_`` on CUDA, which adds floats with atomics.
"""

from __future__ import annotations

import torch

__all__ = ["is_sorted", "segment_sum"]


def segment_sum(values: torch.Tensor, segment_ids: torch.Tensor, num_segments: int) -> torch.Tensor:
    """Sum ``values [M, ...]`` into ``[num_segments, ...]`` by ``segment_ids [M]`` (int64).

    Deterministic on every device; empty segments sum to 0.
    """
    lengths = torch.bincount(segment_ids, minlength=num_segments)
    if values.shape[0] == 0:
        return values.new_zeros((num_segments, *values.shape[1:]))
    if not is_sorted(segment_ids):  # ids already grouped (one image, grid edges) skip the sort
        values = values[torch.argsort(segment_ids, stable=True)]
    return torch.segment_reduce(values, "sum", lengths=lengths, axis=0, unsafe=True)


def is_sorted(values: torch.Tensor) -> bool:
    """Whether ``values [M]`` is non-decreasing (one pass, no sort)."""
    return values.numel() < 2 or bool((values[1:] >= values[:-1]).all())
