"""The tile pre-pass's longest dependent chain (issue 24, part 4), for both of its kernels: what
one thread (or one warp) per tile does in a row, counted tile by tile, and the latency model of
the audit — a warp waits for its slowest lane, and a lane's steps wait on each other's memory
accesses.

``tile_greedy`` (the host's and the tail's kernel) runs the exact greedy of a tile on one thread
(32 tiles to a warp: one warp per thread block). A build of the host library with
``-DGPUCOPS_COUNT_CHAIN`` counts, per tile, its merges, its walks up the tournament tree (each
⌈log2 m⌉ + 1 levels for m edges), its steps along the clusters' edge lists and the edges it
scores; the same source as the solver's, so the same decisions (the counting build adds only the
counters). A tile's chain, in dependent steps — each waits for a memory access the one before
decided:

    merges · 2   (the merged cost row, then its minimum)
    + tree walks · (⌈log2 m⌉ + 1)   (a level's two children, then its parent)
    + list steps   (the next slot of a cluster's edge list)
    + scores   (an edge's two cost rows: their K loads do not wait on each other)

``tile_greedy_warp`` (a GPU's pre-pass) runs a tile on a warp, in phases of its 32 lanes; the
counting build counts each phase's busiest lane (an edge, node or class it visits, a score it
computes, a step of a reduction) and sums them over the phases, and a tile's chain is that sum
plus 4 warp-wide reads a merge (the best edge, its end-points; the best class, its cost). Each
lane step is counted as dependent, though a lane's loads of its edges do not wait on each other:
an upper bound. "lane work" is every lane's steps (what the warp's issue slots pay).

A warp's chain is its slowest tile's (thread kernel) or its tile's (warp kernel); all warps run
at once (8,192 tiles at 1024×2048: 256 warps of the thread kernel, 8,192 of the warp kernel, a
multiprocessor holds 64), so the pre-pass takes about the longest warp chain times the latency of
a dependent access: ~0.2 µs where the tile's state stays in L2, ~0.6 µs from memory (a 256-node
tile holds ~40 KB of class costs alone; 8,192 of them do not fit in L2). A model, not a
measurement: it leaves out the thread kernel's setup before the first merge (independent loads),
overlap between a thread's independent accesses, and the throughput the warps share.

    .venv/bin/python benchmarks/prepass_chain.py                       # 1024×2048 and the batch
    .venv/bin/python benchmarks/prepass_chain.py --cases 1x256x512 --json chain.json
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import functools
import statistics
from collections.abc import Iterator

import pytest
import torch

import gpucops

# isort: split
import gpucops.solver as solver_package
from gpucops.cli import report_records
from gpucops.solver.backend import KernelSteps, host_library
from gpucops.solver.tiles import grid_tiles
from gpucops.synthetic import make_problem

CITYSCAPES_DISTANCES = (1, 4, 16, 32, 64)
COUNTERS = ("merges", "tree_walks", "list_steps", "scores", "edges")
WARP = 32  # tiles a warp runs, one per thread (tile_greedy's thread block)
LATENCIES_US = (0.2, 0.6)  # a dependent access from L2, from memory


KERNELS = ("thread", "warp")  # the pre-pass's kernels: a thread per tile, a warp per tile
# the warp kernel's counters (its build counts phases, not tree walks and list steps)
WARP_COUNTERS = ("merges", "lane_work", "phase_steps", "scores", "edges")
WARP_READS_PER_MERGE = 4  # the best edge, its end-points; the best class, its cost


def tile_chains(counts: torch.Tensor, kernel: str = "thread") -> torch.Tensor:
    """``[tiles]`` dependent steps of each tile from its ``counts [tiles, 5]`` (``COUNTERS`` of
    the thread kernel, ``WARP_COUNTERS`` of the warp kernel)."""
    if kernel == "warp":
        return (counts[:, 2] + WARP_READS_PER_MERGE * counts[:, 0]).double()
    merges, walks, steps, scores, edges = counts.double().unbind(1)
    depth = torch.log2(edges.clamp(min=1)).ceil() + 1
    return merges * 2 + walks * depth + steps + scores


def warp_chains(chains: torch.Tensor, kernel: str = "thread") -> torch.Tensor:
    """``[warps]`` chain of each warp: its slowest of 32 consecutive tiles (thread kernel), its
    tile (warp kernel)."""
    if kernel == "warp":
        return chains
    padded = torch.cat([chains, chains.new_zeros(-len(chains) % WARP)])
    return padded.view(-1, WARP).max(dim=1).values


def counting_library() -> ctypes.CDLL:
    """The host build that counts the pre-pass's steps (``-DGPUCOPS_COUNT_CHAIN``): set its
    counters ``[tiles, 5]`` with ``gpucops_set_chain(pointer)``, None for none."""
    library = host_library(("-DGPUCOPS_COUNT_CHAIN",))
    library.gpucops_set_chain.argtypes = [ctypes.c_void_p]
    library.gpucops_set_chain.restype = None
    return library


@contextlib.contextmanager
def counting_into(library: ctypes.CDLL, counts: torch.Tensor) -> Iterator[None]:
    """Within: the counting build ``library``'s tile kernels add to ``counts [tiles, 5]``."""
    library.gpucops_set_chain(counts.data_ptr())
    try:
        yield
    finally:
        library.gpucops_set_chain(None)


@contextlib.contextmanager
def solving_on(steps: KernelSteps) -> Iterator[pytest.MonkeyPatch]:
    """Within: solves run on ``steps``, a batch as one graph, as on a GPU (the CPU solves image by
    image, and the tiles' indices would restart with each image); yields the patch for more."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(solver_package, "steps_for", lambda device: steps)
        split = functools.partial(solver_package.contract_parallel, split_images=False)
        patch.setattr(solver_package, "contract_parallel", split)
        yield patch


def count_prepass(problem: tuple, tile: int, kernel: str = "thread") -> tuple[torch.Tensor, int]:
    """Solve ``problem`` (``gpucops.solve``'s positional arguments) with the counting build, the
    pre-pass on ``kernel``, and return the counters ``[tiles, 5]`` of its pre-pass and the merges
    it made."""
    node_costs, _, _, distances = problem
    batch, _, height, width = node_costs.shape
    library = counting_library()
    # the warp kernels throughout for "warp" (the sorts too), as a GPU runs them
    steps = KernelSteps(torch.device("cpu"), library=library, warps=kernel == "warp")
    tiles = batch * grid_tiles(height, width, distances, tile, torch.device("cpu")).num_tiles
    counts = torch.zeros(tiles, len(COUNTERS), dtype=torch.int64)
    tile_roots = steps.tile_roots

    def counted_tile_roots(*args: object) -> torch.Tensor:
        # counters only while the tiles run (the sorts' lanes would count too)
        with counting_into(library, counts):
            return tile_roots(*args)

    with solving_on(steps) as patch:  # no tail: the only tile greedy is the pre-pass's
        patch.setattr(steps, "tile_roots", counted_tile_roots)
        labeling = gpucops.solve(*problem, tile=tile, tail=0)
    return counts, int(labeling.info["tile_merges"])


def run(args: argparse.Namespace) -> list[dict]:
    records = []
    for case in args.cases:
        batch, height, width = (int(v) for v in case.split("x"))
        p = make_problem(batch, height, width, args.classes, args.distances, seed=args.seed)
        problem = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
        for kernel in args.kernels:
            counts, tile_merges = count_prepass(problem, args.tile, kernel)
            chains = tile_chains(counts, kernel)
            warps = warp_chains(chains, kernel)
            longest = float(warps.max())
            names = WARP_COUNTERS if kernel == "warp" else COUNTERS
            mean = counts.double().mean(dim=0)
            records.append(
                {
                    "case": f"{case} K={args.classes} tile={args.tile} seed={args.seed}",
                    "kernel": kernel,
                    "tiles": len(chains),
                    "merges": int(counts[:, 0].sum()),
                    "tile_merges": tile_merges,
                    **{f"mean_{name}": float(v) for name, v in zip(names, mean, strict=True)},
                    "mean_tile_chain": float(chains.mean()),
                    "median_warp_chain": float(statistics.median(warps.tolist())),
                    "longest_warp_chain": longest,
                    "model_ms": [longest * latency / 1000 for latency in LATENCIES_US],
                }
            )
        if len(records) >= 2 and records[-2]["case"] == records[-1]["case"]:
            # the warp kernel's chain as a share of the thread kernel's, on the same tiles
            records[-1]["chain_ratio"] = (
                records[-1]["longest_warp_chain"] / records[-2]["longest_warp_chain"]
            )
    return records


def _row(record: dict) -> list[object]:
    low, high = record["model_ms"]
    work = record.get("mean_lane_work")
    ratio = record.get("chain_ratio")
    return [
        record["case"], record["kernel"], record["tiles"], f"{record['mean_merges']:.0f}",
        f"{record['mean_scores']:.0f}", "—" if work is None else f"{work:,.0f}",
        f"{record['mean_tile_chain']:,.0f}", f"{record['median_warp_chain']:,.0f}",
        f"{record['longest_warp_chain']:,.0f}", "—" if ratio is None else f"1/{1 / ratio:.1f}",
        f"{low:.1f}–{high:.1f}",
    ]  # fmt: skip


HEADER = [
    "case", "kernel", "tiles", "merges/tile", "scores/tile", "lane work/tile", "tile chain",
    "warp chain (median)", "longest warp chain", "vs thread", "model ms",
]  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", nargs="+", default=["1x1024x2048", "24x128x256"])
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--distances", type=int, nargs="+", default=list(CITYSCAPES_DISTANCES))
    parser.add_argument("--tile", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--kernels", nargs="+", choices=KERNELS, default=list(KERNELS))
    parser.add_argument("--json", help="also write the records as JSON here")
    args = parser.parse_args(argv)
    return report_records(run(args), HEADER, _row, args.json)


if __name__ == "__main__":
    main()
