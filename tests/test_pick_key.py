"""The pick key's float32 bits of t (issue 19): the host kernels, the torch reference and a GPU
must build the same key, also where float32 arithmetic flushes subnormals to zero — CuPy compiles
with ``-ftz=true``, under which the device's double → float conversion flushes every t < 2^-126."""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import textwrap

import pytest
import torch

from gpucops.solver.backend import KernelSteps
from gpucops.solver.steps import TorchSteps

HOST = torch.device("cpu")
FLOAT_MIN, FLOAT_MAX = 2.0**-126, float(torch.finfo(torch.float32).max)


def interesting_scores(count: int, seed: int) -> torch.Tensor:
    """Positive doubles over float32's whole range: subnormal and beyond-max results, the
    boundaries, exact ties of the rounding and their neighbours, and random bit patterns."""
    g = torch.Generator().manual_seed(seed)
    exponents = torch.randint(-160, 140, (count,), generator=g).double()
    random = torch.rand(count, generator=g, dtype=torch.float64).add(1.0) * 2.0**exponents
    edges = torch.tensor([2.0**-149, 2.0**-150, 2.0**-151, FLOAT_MIN, FLOAT_MAX, 2.0**128, 1e300])
    # halfway between neighbouring floats (normal and subnormal), and one double either side
    floats = torch.tensor([1.0, 3.0, FLOAT_MIN, 2.0**-140, 5 * 2.0**-149, FLOAT_MAX / 2])
    ulp = torch.where(floats < FLOAT_MIN, 2.0**-149, floats * 2.0**-23)
    halfway = (floats.double() + ulp / 2).double()
    near = torch.cat(
        [halfway, torch.nextafter(halfway, halfway * 2), torch.nextafter(halfway, 0 * halfway)]
    )
    return torch.cat([random, edges.double(), near])


def keys_of(kernels: KernelSteps, scores: torch.Tensor) -> torch.Tensor:
    """The kernels' pick key of every score: edge e joins clusters 2e and 2e + 1 alone, so each
    cluster's best key is its edge's (read from the kept buffer the pick kernel filled — a fresh
    instance has no pass's zeroed scratch to hand out instead; a band of fraction 1 keeps every
    positive score)."""
    count = scores.shape[0]
    edges = torch.arange(2 * count).view(count, 2)
    kernels.top_fraction_pick(scores, edges, torch.zeros(2 * count, dtype=torch.int64), 1, 1.0)
    return kernels._scratch[("best", torch.int64)][: 2 * count : 2].clone()


def test_the_kernels_key_holds_the_float32_bits_of_t():
    scores = interesting_scores(20000, 0)
    expected = scores.float().view(torch.int32).long()  # IEEE round to nearest even
    assert torch.equal(keys_of(KernelSteps(HOST), scores) >> 32, expected)


FLUSHED = textwrap.dedent(
    """
    import json, sys
    import torch
    from gpucops.solver.backend import KernelSteps, host_library
    # the library's constructor sets the thread's flush-to-zero mode, as CuPy's -ftz=true does
    # for the GPU's float arithmetic
    kernels = KernelSteps(torch.device("cpu"), library=host_library(("-include", sys.argv[1])))
    flushed = torch.tensor([2.0 ** -140], dtype=torch.float64).float().item() == 0.0
    scores = torch.tensor(json.loads(sys.argv[2]), dtype=torch.float64)
    edges = torch.tensor(json.loads(sys.argv[3]))
    image = torch.zeros(int(edges.max()) + 1, dtype=torch.int64)
    picks = kernels.top_fraction_pick(scores, edges, image, 1, 1.0)  # every positive score
    print(json.dumps({"flushed": flushed, "picks": picks.tolist()}))
    """
)
# x86-64: MXCSR bit 15 (FTZ) flushes float results below FLT_MIN to zero
FTZ_HEADER = (
    "__attribute__((constructor)) static void gpucops_flush_to_zero() {\n"
    "    __builtin_ia32_ldmxcsr(__builtin_ia32_stmxcsr() | 0x8000);\n"
    "}\n"
)


@pytest.mark.skipif(platform.machine() != "x86_64", reason="sets the x86-64 MXCSR")
def test_picks_of_subnormal_scores_survive_flushed_float_arithmetic(tmp_path):
    # subnormal float32 scores whose largest is not at the lowest edge index: a flushed key ties
    # them all at 0 and picks the lowest index instead
    scale = 2.0**-140
    scores = torch.tensor([1.0, 3.0, 2.0, 5.0, 4.0, 0.5]) * scale
    edges = torch.tensor([[0, 1], [0, 2], [0, 3], [1, 3], [2, 3], [1, 2]])
    expected = TorchSteps().pick(scores.double(), edges, 4)
    header = tmp_path / "flush_to_zero.h"
    header.write_text(FTZ_HEADER)
    result = subprocess.run(
        [sys.executable, "-c", FLUSHED, str(header), json.dumps(scores.tolist()),
         json.dumps(edges.tolist())],
        capture_output=True, text=True, env={**__import__("os").environ,
                                             "GPUCOPS_CACHE_DIR": str(tmp_path)},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    got = json.loads(result.stdout)
    assert got["flushed"]  # the emulation is on: float arithmetic there flushes
    assert got["picks"] == expected.tolist() == [1, 3, 4, 3]
