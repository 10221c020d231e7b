"""The pytest-benchmark suites' helpers (benchmarks/suite.py, benchmarks/machine_id.py,
benchmarks/conftest.py): the machine id of the baseline folders, and the quality floors that make
a faster-but-worse solver fail. The suites themselves run (tiny shapes, a saved baseline) in
``tests/test_gpu_validate.py``'s dry run."""

from __future__ import annotations

import importlib.util
import platform
import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
sys.path.append(str(BENCHMARKS))  # as pytest puts it there for the suites
from machine_id import cpu_model, machine_id, slug, timer  # noqa: E402
from suite import FLOORS, MEASURED, SMOKE_FLOOR, QualityBelowFloor, check_floor  # noqa: E402

CPUINFO = """processor\t: 0
vendor_id\t: AuthenticAMD
model name\t: AMD EPYC 7B13 64-Core Processor
processor\t: 1
model name\t: AMD EPYC 7B13 64-Core Processor
"""


def test_machine_id_names_architecture_cores_cpu_and_gpu():
    assert cpu_model(CPUINFO) == "AMD EPYC 7B13 64-Core Processor"
    assert slug("Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz") == "intel-xeon-e5-2680-v4-2-40ghz"
    arch = platform.machine()
    assert machine_id(2, "AMD EPYC", "") == f"{arch}-2c-amd-epyc"
    assert machine_id(16, cpu_model(CPUINFO), "NVIDIA H200") == (
        f"{arch}-16c-amd-epyc-7b13-64-core-nvidia-h200"
    )
    assert slug("  ") == "unknown"
    assert machine_id() == machine_id()  # stable: no clock, host name or load in it
    # CPU seconds without a GPU (a neighbour's load inflates them less), wall-clock with one
    assert (timer(cuda=False), timer(cuda=True)) == ("time.process_time", "time.perf_counter")


def test_floors_are_measured_values_minus_the_margin_and_reject_the_worse_variants():
    for key, (measured, worse, variant) in MEASURED.items():
        assert FLOORS[key] < measured, key
        if worse is not None:  # the deliberately worse solver of RESULTS.md falls below
            assert worse < FLOORS[key], (key, variant)
    assert SMOKE_FLOOR < min(FLOORS.values())


def test_check_floor_rejects_a_worse_result():
    check_floor("parallel/x", 0.9963, 0.9963)  # at the floor: passes
    with pytest.raises(QualityBelowFloor, match=r"0\.99378 is below its floor 0\.9963"):
        check_floor("parallel/x", 0.99378, 0.9963)
    with pytest.raises(QualityBelowFloor):
        check_floor("parallel/x", float("nan"), 0.9963)


def _conftest():
    spec = importlib.util.spec_from_file_location("benchmarks_conftest", BENCHMARKS / "conftest.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Benchmark:  # what the Timer uses of pytest-benchmark's fixture
    def __init__(self):
        self.extra_info = {}

    def pedantic(self, target, setup=None, rounds=1, warmup_rounds=0, iterations=1):
        args, kwargs = setup() if setup else ((), {})
        return target(*args, **kwargs)


def test_a_benchmark_records_its_quality_and_fails_below_the_floor():
    timer = _conftest().Timer(_Benchmark(), "cpu", smoke=False)
    key = "parallel/stride4-B1-256x512-K19"
    assert timer(lambda: 7, rounds=3) == 7
    timer.check(key, 0.99783, objective=-1.0, rounds=22)
    assert timer.benchmark.extra_info == {
        "quality": 0.99783, "quality_floor": FLOORS[key], "objective": -1.0, "rounds": 22,
    }  # fmt: skip
    with pytest.raises(QualityBelowFloor):
        timer.check(key, 0.99378)  # tile=0's quality on this case
    smoke = _conftest().Timer(_Benchmark(), "cpu", smoke=True)
    smoke.check(key, 0.95)  # tiny problems: only the smoke floor
    with pytest.raises(QualityBelowFloor):
        smoke.check(key, 0.5)
