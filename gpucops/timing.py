"""Wall-clock timing that counts GPU work: synchronise the device around every measurement,
warm up first (kernel builds, caches), report the median of repeats with their spread.

A single timed call on a shared machine can be off by a factor of ten (a neighbour's burst, a
first allocation), so every figure this project prints is a median with its min–max range."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

__all__ = ["Timing", "median_time", "synchronize"]

T = TypeVar("T")


def synchronize(device: torch.device | str) -> None:
    """Wait for the device's queued work (a no-op off CUDA)."""
    device = torch.device(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Seconds of the timed repeats of one measurement: ``median`` is the figure, ``low`` and
    ``high`` (min and max) its spread."""

    times: tuple[float, ...]

    def __post_init__(self) -> None:
        if not self.times:
            raise ValueError("a Timing needs at least one time")

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def low(self) -> float:
        return min(self.times)

    @property
    def high(self) -> float:
        return max(self.times)

    def text(self, digits: int = 3) -> str:
        """``"median (min–max)"``; just the median when there was one repeat."""
        if len(self.times) == 1:
            return f"{self.median:.{digits}f}"
        return f"{self.median:.{digits}f} ({self.low:.{digits}f}–{self.high:.{digits}f})"

    def per(self, count: int) -> Timing:
        """The same repeats divided by ``count`` (seconds per image of a batch)."""
        return Timing(tuple(t / count for t in self.times))

    def record(self, key: str) -> dict[str, float | list[float]]:
        """JSON fields: ``key`` the median, ``key_min``/``key_max`` the spread, ``key_times``
        every repeat (``Timing(tuple(record[key + "_times"]))`` rebuilds it)."""
        return {
            key: self.median,
            f"{key}_min": self.low,
            f"{key}_max": self.high,
            f"{key}_times": list(self.times),
        }


def median_time(
    function: Callable[[], T], device: torch.device | str, repeats: int = 3, warmup: int = 1
) -> tuple[T, Timing]:
    """``(last result, Timing)`` of ``repeats`` calls of ``function`` after ``warmup`` untimed
    ones."""
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
    return result, Timing(tuple(times))
