"""gpucops.timing: medians with their spread."""

from __future__ import annotations

import pytest

from gpucops.timing import Timing, median_time


def test_a_timing_is_a_median_with_its_spread():
    timing = Timing((0.3, 0.1, 0.2, 1.5))
    assert (timing.median, timing.low, timing.high) == (0.25, 0.1, 1.5)
    assert timing.text() == "0.250 (0.100–1.500)" and Timing((0.5,)).text(2) == "0.50"
    assert timing.per(2).times == (0.15, 0.05, 0.1, 0.75)
    record = timing.record("solve_s")
    assert record == {"solve_s": 0.25, "solve_s_min": 0.1, "solve_s_max": 1.5,
                      "solve_s_times": [0.3, 0.1, 0.2, 1.5]}  # fmt: skip
    assert Timing(tuple(record["solve_s_times"])) == timing
    with pytest.raises(ValueError, match="at least one"):
        Timing(())


def test_median_time_warms_up_then_times_every_repeat():
    calls = []
    result, timing = median_time(lambda: calls.append(1) or len(calls), "cpu", repeats=3, warmup=2)
    assert result == 5 and len(timing.times) == 3 and min(timing.times) >= 0
    with pytest.raises(ValueError, match="repeats must be"):
        median_time(lambda: None, "cpu", repeats=0)
