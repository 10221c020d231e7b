"""pytest-benchmark suite of the sequential reference greedy on synthetic Cityscapes-like grids.

Run: ``make bench`` (or ``.venv/bin/python -m pytest benchmarks -q``). The figures go into
``benchmarks/RESULTS.md`` with the date, machine and versions.
"""

from __future__ import annotations

import pytest

import gpucops
from gpucops.synthetic import make_problem

# (height, width, rounds): 256×512 is the stride-4 graph of a 1024×2048 Cityscapes image.
SIZES = [(64, 128, 5), (128, 256, 3), (256, 512, 1)]


@pytest.mark.parametrize(
    ("height", "width", "rounds"), SIZES, ids=[f"{h}x{w}" for h, w, _ in SIZES]
)
def test_sequential_reference(benchmark, height, width, rounds):
    p = make_problem(1, height, width, 19, distances=(1, 4, 16, 32, 64), seed=0)
    gpucops.solve(
        p.node_costs[:, :, :8, :8],
        p.edge_costs[:, :2, :8, :8],
        p.partitionable,
        (1,),
        method="sequential",
    )
    lab = benchmark.pedantic(
        gpucops.solve,
        args=(p.node_costs, p.edge_costs, p.partitionable, p.distances),
        kwargs={"method": "sequential"},
        rounds=rounds,
        iterations=1,
    )
    nodes, edges, _, _ = gpucops.grid_to_graph(p.node_costs, p.edge_costs, p.distances)
    benchmark.extra_info.update(
        nodes=nodes.shape[0],
        edges=edges.shape[0],
        merges=lab.info["merges"],
        objective=float(lab.objective[0]),
    )
