"""pytest-benchmark suite of the parallel contraction on synthetic Cityscapes-like grids (CPU host
build; on a CUDA machine also the GPU). The full table with the sequential reference in the same
run is ``benchmarks/solver.py``."""

from __future__ import annotations

import pytest

import gpucops

# isort: split
import torch

from gpucops.synthetic import make_problem

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
CASES = [(1, 128, 256, 19), (8, 128, 256, 19), (1, 256, 512, 19), (1, 256, 512, 133)]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(
    ("batch", "height", "width", "num_classes"),
    CASES,
    ids=[f"B{b}-{h}x{w}-K{k}" for b, h, w, k in CASES],
)
def test_parallel_solver(benchmark, device, batch, height, width, num_classes):
    p = make_problem(batch, height, width, num_classes, seed=0, device=device)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    gpucops.solve(*args)  # warm-up: kernel builds

    def run():
        lab = gpucops.solve(*args)
        if device == "cuda":
            torch.cuda.synchronize()
        return lab

    lab = benchmark.pedantic(run, rounds=3, iterations=1)
    benchmark.extra_info.update(rounds=lab.info["rounds"], objective=lab.objective.sum().item())
