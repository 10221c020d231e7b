"""The bucket sorts' longest dependent chains in one solve (issue 24, item 6): a thread per bucket
(the host's kernels ``bucket_sort``, ``bucket_sort_runs``) against a warp per bucket (a GPU's
``bucket_sort_warp``, ``bucket_sort_runs_warp``), launch by launch, on the buckets a solve on the
GPU path sorts (``benchmarks/gpu_model.py``'s setting: the CUDA launch path on the CPU, a batch
as one graph).

A thread's bucket is a shell sort (``gpucops_sort_bucket``), every step waiting on the one before;
its steps are counted exactly by the same algorithm on the bucket's own keys, for the launch's
largest buckets (``--largest``; a warp of 32 buckets waits for its slowest, and the largest bucket
is nearly always the slowest), plus one step an item for the runs count. A warp's bucket is a
bitonic network: log²n/2 steps of n/64 pairs a lane, then n/32 items a lane for the runs — fixed
by the size. Launches run one after the other, so a solve's sort latency is the sum over its
launches of each one's longest chain; the model multiplies it by 0.2–0.6 µs a dependent access
(as ``benchmarks/prepass_chain.py``). It leaves out throughput (all buckets at once) and the
insertion sort's fast path (buckets of ≤ 32 items are cheap either way).

    .venv/bin/python benchmarks/sort_chain.py                      # 1024×2048 and the batch
    .venv/bin/python benchmarks/sort_chain.py --cases 1x256x512 --json sorts.json
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch

import gpucops

# isort: split
from gpucops.cli import report_records
from gpucops.solver.backend import steps_for
from gpucops.synthetic import make_problem

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling scripts
from gpu_model import gpu_path
from prepass_chain import CITYSCAPES_DISTANCES, LATENCIES_US

SORTS = {"bucket_sort", "bucket_sort_runs", "bucket_sort_warp", "bucket_sort_runs_warp"}
WARP = 32


def shell_steps(items: list[int]) -> int:
    """Dependent steps of ``gpucops_sort_bucket`` on ``items``: a step an item a pass, and one
    for each move."""
    items, n, gap, steps = list(items), len(items), 1, 0
    if n > 32:
        while gap < n // 3:
            gap = 3 * gap + 1
    while gap > 0:
        for i in range(gap, n):
            item, j = items[i], i
            steps += 1
            while j >= gap and item < items[j - gap]:
                items[j] = items[j - gap]
                j -= gap
                steps += 1
            items[j] = item
        gap //= 3
    return steps


def bitonic_steps(n: int) -> int:
    """Dependent steps of a lane in ``gpucops_lanes_sort`` for ``n`` items: each step of the
    network, a lane's share of its pairs."""
    if n < 2:
        return 0
    levels = math.ceil(math.log2(n))
    pairs_per_lane = math.ceil(2**levels / 2 / WARP)
    return levels * (levels + 1) // 2 * pairs_per_lane


def sort_launches(problem: tuple, largest: int) -> list[dict]:
    """Solve ``problem`` on the GPU path and return, for each sort launch, its bucket count, its
    largest bucket and both kernels' longest chains."""
    launches: list[dict] = []
    with gpu_path() as patch:
        steps = steps_for(torch.device("cpu"))
        launch_cuda = steps._launch_cuda

        def recorded(name: str, count: int, args: tuple) -> None:
            if name in SORTS:
                start, slot = args[1], args[2]
                sizes = start.diff()
                runs = 1 if "runs" in name else 0
                top = sizes.topk(min(largest, sizes.numel())).indices.tolist()
                thread = max(
                    (
                        shell_steps(slot[start[b] : start[b + 1]].tolist()) + runs * int(sizes[b])
                        for b in top
                    ),
                    default=0,
                )
                n = int(sizes.max()) if sizes.numel() else 0
                warp = bitonic_steps(n) + runs * math.ceil(n / WARP)
                launches.append(
                    {"buckets": int(args[0]), "largest": n, "thread": thread, "warp": warp}
                )
            launch_cuda(name, count, args)

        patch.setattr(steps, "_launch_cuda", recorded)
        gpucops.solve(*problem)
    return launches


def run(args: argparse.Namespace) -> list[dict]:
    records = []
    for case in args.cases:
        batch, height, width = (int(v) for v in case.split("x"))
        p = make_problem(batch, height, width, args.classes, CITYSCAPES_DISTANCES, seed=args.seed)
        launches = sort_launches(
            (p.node_costs, p.edge_costs, p.partitionable, p.distances), args.largest
        )
        thread = sum(launch["thread"] for launch in launches)
        warp = sum(launch["warp"] for launch in launches)
        records.append(
            {
                "case": f"{case} K={args.classes} seed={args.seed}",
                "sort_launches": len(launches),
                "largest_bucket": max(launch["largest"] for launch in launches),
                "thread_chain": thread,
                "warp_chain": warp,
                "thread_ms": [thread * latency / 1000 for latency in LATENCIES_US],
                "warp_ms": [warp * latency / 1000 for latency in LATENCIES_US],
                "launches": launches,
            }
        )
    return records


def _row(record: dict) -> list[object]:
    return [
        record["case"], record["sort_launches"], f"{record['largest_bucket']:,}",
        f"{record['thread_chain']:,}", "{:.1f}–{:.1f}".format(*record["thread_ms"]),
        f"{record['warp_chain']:,}", "{:.1f}–{:.1f}".format(*record["warp_ms"]),
        f"1/{record['thread_chain'] / max(record['warp_chain'], 1):.1f}",
    ]  # fmt: skip


HEADER = [
    "case", "sort launches", "largest bucket", "thread chain", "thread ms", "warp chain",
    "warp ms", "warp vs thread",
]  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["1x1024x2048", "24x128x256"])
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--largest", type=int, default=8, help="buckets counted exactly a launch")
    parser.add_argument("--json", help="also write the records as JSON here")
    args = parser.parse_args(argv)
    return report_records(run(args), HEADER, _row, args.json)


if __name__ == "__main__":
    main()
