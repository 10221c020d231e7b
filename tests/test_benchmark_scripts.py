"""The benchmark scripts run end to end (tiny shapes, CPU): they must not rot between GPU runs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_kernel_benchmark_smoke(tmp_path):
    records = _load("kernels").main(
        ["--device", "cpu", "--batch", "1", "--channels", "2", "--classes", "3",
         "--size", "9", "20", "--distances", "1", "4", "--json", str(tmp_path / "k.json")]
    )  # fmt: skip
    assert [r["kernel"] for r in records][:2] == ["shift forward", "shift forward+backward"]
    assert all(r["triton ms"] > 0 and r["torch ms"] > 0 for r in records)
    assert (tmp_path / "k.json").exists()


def test_layer_benchmark_smoke():
    record = _load("layer").main(
        ["--batch", "2", "--size", "16", "24", "--classes", "5", "--distances", "1", "4",
         "--samples", "2", "--repeats", "1"]
    )  # fmt: skip
    assert record["forward s"] > 0 and record["backward s"] > 0


def test_solver_benchmark_smoke(tmp_path):
    solver = _load("solver")
    tiny = ["--sizes", "12x72", "--classes", "5", "--batches", "2", "--repeats", "1"]
    default = solver.main([*tiny, "--json", str(tmp_path / "s.json")])
    plain = solver.main([*tiny, "--tile", "0", "--top-fraction", "none"])
    for record in (*default, *plain):
        assert record["parallel_s"] > 0 and record["sequential_s"] > 0
        assert 0.5 < record["quality_min"] <= record["quality_mean"]
    assert (tmp_path / "s.json").exists()
