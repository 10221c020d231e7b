"""``benchmarks/gpu_validate.sh --dry-run`` runs end to end on the CPU (issue 19): the one command
for a lent GPU must not rot between GPU runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"
SCRIPT = BENCHMARKS / "gpu_validate.sh"
sys.path.append(str(BENCHMARKS))
from machine_id import machine_id  # noqa: E402

STEPS = [
    "environment", "gpu-tests", "solver-full", "solver-crops", "warp-kernels", "kernels", "layer",
    "bench", "bench-baseline", "memcheck",
]  # fmt: skip
SUITES = {
    "test_data_item", "test_kernel", "test_layer_backward", "test_layer_forward",
    "test_parallel_solver", "test_pq_accumulator", "test_predictor", "test_sequential_solver",
}  # fmt: skip


def test_the_gpu_validation_script_dry_runs(tmp_path):
    out = tmp_path / "results"
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "TRITON_DEBUG")}
    result = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", "--out", str(out)],
        env=dict(env, PYTHON=sys.executable), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    summary = (out / "summary.md").read_text()
    assert result.returncode == 0, (summary, result.stdout[-3000:], result.stderr[-3000:])
    rows = [line.split("|")[1:3] for line in summary.splitlines()[2:]]
    assert [(name.strip(), status.strip()) for name, status in rows] == [(s, "ok") for s in STEPS]
    environment = json.loads((out / "environment.json").read_text())
    assert environment["dry_run"] and {"date", "device", "torch", "triton"} <= set(environment)
    for figures in ("solver-full", "solver-crops", "warp-kernels", "kernels", "layer", "bench"):
        assert json.loads((out / f"{figures}.json").read_text()), figures
    # the suites' baseline, as `make bench-save` stores one: every benchmark, with its quality
    (baseline,) = (out / "baselines").glob("*/*/0001_gpu.json")
    assert baseline.parent.parent.name == machine_id()
    benchmarks = json.loads(baseline.read_text())["benchmarks"]
    names = {b["name"].partition("[")[0] for b in benchmarks}
    assert names == SUITES, names
    assert all("load_before" in b["extra_info"] for b in benchmarks)
    assert sum("quality" in b["extra_info"] for b in benchmarks) >= 8
    with tarfile.open(f"{out}.tar.gz") as archive:  # one file to bring back from the device
        assert "results/summary.md" in archive.getnames()
