"""The GPU code compiles for sm_90 without a GPU (issue 19), each check shown to fail on a planted
defect: every ``cuda/*.cu`` with nvcc, warnings as errors and spill / local-memory warnings on;
with NVRTC and CuPy's own options where NVRTC is installed; every Triton kernel ahead of time,
once per launch signature of the public functions."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gpucops.solver.backend import cuda_program, cuda_sources
from tests.nvrtc import compile_ptx, find_nvrtc

ROOT = Path(__file__).resolve().parent.parent
# A local array indexed at run time lives in local memory (a spill-like cost ptxas warns of),
# and an unused variable draws a front-end warning: each must fail the nvcc check.
PLANTED_CUDA = {
    "local memory": """
#include "shim.cuh"
extern "C" __global__ void planted(long long n, const long long* index, double* out) {
    GPUCOPS_FOR_EACH(i, n) {
        double local[64];
        for (int k = 0; k < 64; ++k) local[k] = out[k * n + i];
        out[i] = local[index[i] & 63];
    }
}
""",
    "warning": """
#include "shim.cuh"
extern "C" __global__ void planted(long long n, double* out) {
    GPUCOPS_FOR_EACH(i, n) { int unused = 3; out[i] = 0.0; }
}
""",
}


def nvcc() -> str:
    path = shutil.which("nvcc")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must compile the CUDA sources, but nvcc is not on PATH")
        pytest.skip("nvcc not found")
    return path


def nvcc_check(source: Path, output: Path, kind: str = "-cubin") -> subprocess.CompletedProcess:
    """nvcc for sm_90, all warnings as errors, ptxas warning of spills and local memory."""
    command = [
        nvcc(), kind, "-arch=sm_90", "-std=c++17", "-I", str(cuda_sources()),
        "-Werror", "all-warnings", "-Xptxas", "-warn-spills,-warn-lmem-usage",
        str(source), "-o", str(output),
    ]  # fmt: skip
    return subprocess.run(command, capture_output=True, text=True)


@pytest.mark.parametrize("source", sorted(cuda_sources().glob("*.cu")), ids=lambda p: p.name)
def test_cuda_sources_compile_for_sm90_without_warnings(source, tmp_path):
    result = nvcc_check(source, tmp_path / "kernels.cubin")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "kernels.cubin").stat().st_size > 0
    # no fused multiply-add: the host build's arithmetic rounds every product and sum, so a
    # fused one on the GPU would break CPU = GPU bit for bit
    ptx = nvcc_check(source, tmp_path / "kernels.ptx", "-ptx")
    assert ptx.returncode == 0, ptx.stderr
    assert "fma." not in (tmp_path / "kernels.ptx").read_text()


@pytest.mark.parametrize("defect", sorted(PLANTED_CUDA))
def test_the_nvcc_check_fails_on_a_planted_defect(defect, tmp_path):
    source = tmp_path / "planted.cu"
    source.write_text(PLANTED_CUDA[defect])
    result = nvcc_check(source, tmp_path / "planted.cubin")
    assert result.returncode != 0
    assert ("Local memory" if defect == "local memory" else "warning") in result.stderr


def nvrtc_or_skip() -> Path:
    library = find_nvrtc()
    if library is None:
        pytest.skip(
            "NVRTC is not installed here (no cupy/nvidia-cuda-nvrtc wheel, no libnvrtc under "
            "$CUDA_PATH or /usr/local/cuda): the CUDA sources are checked with nvcc alone"
        )
    return library


def cupy_options() -> tuple[str, ...]:
    """The options CuPy hands NVRTC for our module: ours, the target's architecture, and the
    -ftz=true it appends (cupy/cuda/compiler.py, _compile_with_cache_cuda)."""
    return (*cuda_program()[1], "-arch=sm_90", "-ftz=true")


def test_nvrtc_compiles_the_module_with_cupys_options():
    library = nvrtc_or_skip()
    code, log = compile_ptx(library, cuda_program()[0], "contraction.cu", cupy_options())
    assert code == 0, log
    assert "warning" not in log.lower(), log


def test_the_nvrtc_check_fails_on_a_planted_defect():
    library = nvrtc_or_skip()
    # a kernel that includes a system header: NVRTC has none by default
    source = "#include <cstring>\n" + cuda_program()[0]
    code, log = compile_ptx(library, source, "contraction.cu", cupy_options())
    assert code != 0 and "cstring" in log


def triton_aot(tmp_path: Path, prelude: str = "", parts: tuple[tuple[str, ...], ...] = ((),)):
    """``tests/triton_aot.py`` in processes without the interpreter, one per group of cases in
    ``parts`` (at once: a compile keeps one core busy), each with a fresh Triton cache (so every
    signature really compiles); their (return code, report, stderr)."""
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "TRITON_DEBUG")}
    processes = []
    for index, only in enumerate(parts):
        script = f"import sys, tests.triton_aot as aot\n{prelude}\nsys.exit(aot.main({only!r}))"
        processes.append(
            subprocess.Popen(
                [sys.executable, "-c", script], cwd=ROOT,
                env=dict(env, TRITON_CACHE_DIR=str(tmp_path / f"triton{index}")),
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            )
        )  # fmt: skip
    results = []
    for process in processes:
        stdout, stderr = process.communicate(timeout=600)
        report = json.loads(stdout.splitlines()[-1]) if stdout.strip() else {}
        results.append((process.returncode, report, stderr))
    return results


def test_triton_kernels_compile_ahead_of_time_for_sm90(tmp_path):
    # every case in one of two halves, split by dtype
    halves = (("torch.float32", "torch.bfloat16"), ("torch.float16", "torch.float64"))
    compiled = []
    for code, report, stderr in triton_aot(tmp_path, parts=halves):
        assert code == 0, (report.get("failures"), stderr[-3000:])
        compiled += report["compiled"]
    kernels = {entry["kernel"] for entry in compiled}
    assert kernels == {
        "_shift_forward_kernel", "_shift_backward_kernel", "_affine_dropout_forward",
        "_affine_dropout_backward", "_perturb_kernel",
    }  # fmt: skip
    assert all(entry["cubin_bytes"] > 0 for entry in compiled)
    signatures = {(e["kernel"], json.dumps(e["signature"])) for e in compiled}
    assert len(signatures) >= 30  # dtypes × batch 1 / many × seeds × forward / backward


def test_the_triton_aot_check_fails_on_a_planted_defect(tmp_path):
    # a tile width that is no power of two: tl.arange refuses it when compiling for a GPU
    prelude = "from gpucops.kernels import shift\nshift.BLOCK_W = 48"
    [(code, report, _)] = triton_aot(tmp_path, prelude, parts=(("edge_feature_shift",),))
    assert code != 0
    assert report["failures"] and "power of 2" in report["failures"][0]["error"]
