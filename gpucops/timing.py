"""Wall-clock timing that counts GPU work: synchronise the device around every measurement,
warm up first (kernel builds, caches), report the median of repeats."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import TypeVar

import torch

__all__ = ["median_time", "synchronize"]

T = TypeVar("T")


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (a no-op off CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def median_time(
    function: Callable[[], T], device: torch.device | str, repeats: int = 3, warmup: int = 1
) -> tuple[T, float]:
    """``(last result, median seconds)`` of ``repeats`` calls of ``function`` after ``warmup``
    untimed ones."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be ≥ 1 and warmup ≥ 0, got {repeats} and {warmup}")
    result = None
    for _ in range(warmup):
        result = function()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        result = function()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)
