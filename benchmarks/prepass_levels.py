"""A study for issue 24, part 4 (not solver code): the pre-pass in two levels — the exact greedy
in tiles of half the side, then in the full tiles over the clusters the small tiles left — against
the one-level pre-pass: objective, quality against the sequential reference (up to
``--sequential-limit`` pixels), rounds, and each level's longest dependent chain per warp
(``benchmarks/prepass_chain.py``'s model; the second level's tiles are listed on the host here,
as :func:`gpucops.solver.tiles.node_tiles` does — a GPU version would list them on the device).

The study replaces ``parallel.contract_rounds`` for the solves it measures with the pre-pass's
levels and then the solver's own loop (rounds, tail, finish): with one level, the solver's own
solve (the same objective).

    .venv/bin/python benchmarks/prepass_levels.py --sizes 256x512 1024x2048 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import gpucops

# isort: split
from gpucops.cli import report_records
from gpucops.objectives import trivial_objective
from gpucops.solver import parallel
from gpucops.solver.backend import KernelSteps
from gpucops.solver.rounds import ContractionResult, contract_rounds
from gpucops.solver.tiles import node_tiles
from gpucops.synthetic import make_problem

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling script's chain model
from prepass_chain import (
    CITYSCAPES_DISTANCES,
    COUNTERS,
    counting_into,
    counting_library,
    solving_on,
    tile_chains,
    warp_chains,
)


def longest_warp_chain(counts: torch.Tensor) -> float:
    """The longest chain of a warp of consecutive tiles (their counters ``[tiles, 5]``)."""
    return float(warp_chains(tile_chains(counts)).max())


class CountingPrepass:
    """The counting build's steps (``-DGPUCOPS_COUNT_CHAIN``), with counters set per call of the
    tile greedy: the first (level 1) and, for two levels, the second."""

    def __init__(self) -> None:
        self.library = counting_library()
        self.steps = KernelSteps(torch.device("cpu"), library=self.library)
        self.chains: list[float] = []

    def tile_roots(self, graph, tiles, tile_images):
        counts = torch.zeros(tile_images * tiles.num_tiles, len(COUNTERS), dtype=torch.int64)
        with counting_into(self.library, counts):
            root = self.steps.tile_roots(
                graph.costs, graph.edges, graph.weights, tiles, tile_images
            )
        self.chains.append(longest_warp_chain(counts))
        return root


def counted_prepass(counting: CountingPrepass, width: int, sides: tuple[int, ...]):
    """``contract_rounds`` with the pre-pass's greedy in the grid ``tiles`` it is given, then, for
    each further side in ``sides``, in the square tiles of that side (of an image ``width``
    pixels wide) over the clusters the level before left; then the solver's own loop."""

    def contract(graph, tiles, tile_images, options):
        nodes = graph.num_clusters
        per_image = nodes // graph.num_images
        pixel = torch.arange(nodes) % per_image
        row, col = pixel // width, pixel % width
        root = counting.tile_roots(graph, tiles, tile_images)
        graph, node_cluster = graph.contract(root, exact=True)
        for side in sides[1:]:
            tile = (
                (torch.arange(nodes) // per_image) * per_image + row // side * width + col // side
            )
            tile_of = torch.zeros(graph.num_clusters, dtype=torch.int64)
            tile_of.scatter_(0, node_cluster, tile)
            root = counting.tile_roots(graph, node_tiles(tile_of, graph.edges), 1)
            graph, mapping = graph.contract(root, exact=True)
            node_cluster = mapping[node_cluster]
        result = contract_rounds(graph, None, 1, options)
        return ContractionResult(
            result.classes[node_cluster], result.clusters[node_cluster], result.merges_per_round,
            nodes - graph.num_clusters, result.tail_merges,
        )  # fmt: skip

    return contract


def solve_counted(
    problem: tuple, counting: CountingPrepass, contract, tile: int
) -> gpucops.PanopticLabeling:
    """Solve with ``contract`` as the loop and the counting steps, a batch as one graph."""
    with solving_on(counting.steps) as patch:
        patch.setattr(parallel, "contract_rounds", contract)
        return gpucops.solve(*problem, tile=tile)


def run(args: argparse.Namespace) -> list[dict]:
    records = []
    for size in args.sizes:
        height, width = (int(v) for v in size.split("x"))
        for seed in args.seeds:
            p = make_problem(1, height, width, args.classes, args.distances, seed=seed)
            problem = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
            trivial = trivial_objective(*problem).item()
            sequential = None
            if height * width <= args.sequential_limit:
                sequential = gpucops.solve(*problem, method="sequential").objective.item()
            for sides in ((args.tile,), (args.tile // 2, args.tile)):
                counting = CountingPrepass()
                contract = counted_prepass(counting, width, sides)
                labeling = solve_counted(problem, counting, contract, sides[0])
                objective = labeling.objective.item()
                quality = None
                if sequential is not None:
                    quality = (trivial - objective) / (trivial - sequential)
                records.append(
                    {
                        "size": size, "seed": seed, "tiles": list(sides), "objective": objective,
                        "quality": quality, "rounds": labeling.info["rounds"],
                        "level_chains": counting.chains, "chain": sum(counting.chains),
                    }
                )  # fmt: skip
    return records


def _row(record: dict) -> list[object]:
    quality = "—" if record["quality"] is None else f"{record['quality']:.5f}"
    chains = " + ".join(f"{c:,.0f}" for c in record["level_chains"])
    return [
        record["size"], record["seed"], " then ".join(map(str, record["tiles"])),
        f"{record['objective']:.4f}", quality,
        record["rounds"], chains,
    ]  # fmt: skip


HEADER = ["size", "seed", "tiles", "objective", "quality", "rounds", "longest warp chain"]


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["256x512", "1024x2048"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--distances", type=int, nargs="+", default=list(CITYSCAPES_DISTANCES))
    parser.add_argument("--tile", type=int, default=16, help="the full tiles' side")
    parser.add_argument("--sequential-limit", type=int, default=131072)
    parser.add_argument("--json", help="also write the records as JSON here")
    args = parser.parse_args(argv)
    return report_records(run(args), HEADER, _row, args.json)


if __name__ == "__main__":
    main()
