"""The warp-per-item kernels against the thread-per-item ones on one device (issue 24): the tile
pre-pass (``tile_greedy_warp`` against ``tile_greedy``) and the pre-pass's contraction, whose
bucket sorts hold the solve's largest buckets (``bucket_sort_runs_warp`` against
``bucket_sort_runs``, timed through ``coalesce``), each with its result checked equal between
the two, as medians of repeats after a warm-up. On a GPU it measures what
``benchmarks/prepass_chain.py`` and ``benchmarks/sort_chain.py`` model, and decides whether a GPU
keeps the warp kernels (``KernelSteps(warps=None)``); on the CPU (the dry run) it only shows that
the script works — the host's choice is the thread kernels.

    python benchmarks/warp_kernels.py --device cuda                    # 1024×2048, K = 19
    python benchmarks/warp_kernels.py --device cpu --size 64 128 --json warps.json
"""

from __future__ import annotations

import argparse
import functools

import torch

from gpucops.cli import report_records
from gpucops.grid import grid_to_graph
from gpucops.solver.backend import KernelSteps
from gpucops.solver.tiles import grid_tiles
from gpucops.synthetic import make_problem
from gpucops.timing import median_time

CITYSCAPES_DISTANCES = (1, 4, 16, 32, 64)


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    height, width = args.size
    p = make_problem(1, height, width, args.classes, args.distances, seed=args.seed, device=device)
    nodes, edges, weights, _ = grid_to_graph(p.node_costs, p.edge_costs, p.distances, True)
    costs, weights = nodes.double().contiguous(), weights.double().contiguous()
    tiles = grid_tiles(height, width, p.distances, args.tile, device)
    records, results = [], {}
    for warps in (False, True):
        steps = KernelSteps(device, warps=warps)
        kernels = "warp per item" if warps else "thread per item"
        prepass = functools.partial(steps.tile_roots, costs, edges, weights, tiles, 1)
        root, timing = median_time(prepass, device, args.repeats)
        records.append({"step": "tile pre-pass", "kernels": kernels, **timing.record("seconds")})
        # the pre-pass's contraction: clusters numbered by their lowest node
        mapping = torch.unique(root, return_inverse=True)[1]
        contraction = functools.partial(
            steps.coalesce, edges, weights, mapping, int(mapping.max()) + 1
        )
        merged, timing = median_time(contraction, device, args.repeats)
        records.append({"step": "its contraction", "kernels": kernels, **timing.record("seconds")})
        # copies: the steps hand out kept buffers
        results[warps] = (root.clone(), *(t.clone() for t in merged))
    same = all(map(torch.equal, results[False], results[True]))
    for record in records:
        record.update(case=f"{height}x{width} K={args.classes} tile={args.tile}", same=same)
    return records


def _row(record: dict) -> list[object]:
    return [
        record["case"], record["step"], record["kernels"],
        f"{record['seconds'] * 1e3:.2f} ({record['seconds_min'] * 1e3:.2f}–"
        f"{record['seconds_max'] * 1e3:.2f})", "yes" if record["same"] else "NO",
    ]  # fmt: skip


HEADER = ["case", "step", "kernels", "ms (min–max)", "same results"]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--size", type=int, nargs=2, default=[1024, 2048])
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--distances", type=int, nargs="+", default=list(CITYSCAPES_DISTANCES))
    parser.add_argument("--tile", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the records as JSON here")
    args = parser.parse_args(argv)
    records = report_records(run(args), HEADER, _row, args.json)
    if not all(record["same"] for record in records):  # reported first, then a failed step
        raise SystemExit("the warp kernels' results differ from the thread kernels'")
    return records


if __name__ == "__main__":
    main()
