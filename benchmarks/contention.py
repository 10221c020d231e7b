"""Solve time of one 256×512, K = 19 problem (median of 5 after a warm-up), to compare thread
settings with and without a busy neighbour (issue 18, item 16). Run it once per setting, e.g.

    .venv/bin/python benchmarks/contention.py default
    OMP_WAIT_POLICY=passive .venv/bin/python benchmarks/contention.py passive
    (timeout 100 sh -c 'while :; do :; done' &); .venv/bin/python benchmarks/contention.py busy
"""

from __future__ import annotations

import statistics
import sys
import time

import gpucops
from gpucops.synthetic import make_problem


def main(label: str) -> float:
    p = make_problem(1, 256, 512, 19, seed=0)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    gpucops.solve(*args)  # warm-up: host build, kept buffers
    times = []
    for _ in range(5):
        start = time.perf_counter()
        gpucops.solve(*args)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    print(f"{label}: median {median:.3f} s, min {min(times):.3f}, max {max(times):.3f}")
    return median


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "solve")
