"""gpucops side by side with the peers a user would pick instead, on the same costs, one table.

Multicut (K = 1, the grid's edge costs only): ``gpucops.multicut`` parallel (square tiles of 16,
the grid solve's default) and sequential (GAEC) against bioimage-cpp's greedy additive edge
contraction (GAEC) and GAEC followed by Kernighan–Lin. Energy = the sum of the cut edges' costs
(lower is better); "of GAEC" = (all cut − energy) / (all cut − GAEC's energy), the share of
GAEC's improvement over cutting every edge.

Panoptic (K = 19): ``gpucops.solve`` parallel and sequential against bioimage-cpp's Semantic
Mutex Watershed (SMW) under each mapping of :data:`MAPPINGS` from the same costs; the AMWC
objective of every labeling (lower is better) and PQ against the ground truth.

"× peer": the peer's seconds over the row's — GAEC's on multicut rows, the SMW's under the first
``--mappings`` (classic) on panoptic rows.

Problems: ``gpucops.synthetic.make_problem`` scenes (COPS distances 1, 4, 16, 32, 64) at each
``--sizes`` and the data set ``gpucops demo`` writes (``write_synthetic_cityscapes``, with void
and its own scene generator) at ``--demo-size``, costs from its ground truth by
``gpucops.synthetic.noisy_costs``. Timing: every solver of a problem runs in turn,
``--repeats`` rounds, in this one process (GAEC + KL only up to ``--kl-limit`` pixels: it takes
minutes beyond); the first round warms up (host builds, kept buffers) and the median is over the
others — except a solver whose first round took over ``--slow`` seconds, timed once.

    pip install -e '.[bench]'          # bioimage-cpp, the peers (or: make peers)
    .venv/bin/python benchmarks/peers.py
    .venv/bin/python benchmarks/peers.py --sizes 128x256 256x512 512x1024 1024x2048 --json p.json
"""

from __future__ import annotations

import argparse
import importlib
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import gpucops

# isort: split
import torch

from gpucops.cli.table import format_table, markdown_table
from gpucops.data import CityscapesPanoptic, panoptic_segments, write_synthetic_cityscapes
from gpucops.grid import grid_edges, grid_to_graph, square_tiles
from gpucops.labeling import compact_segments
from gpucops.metrics import PanopticQuality
from gpucops.solver import DEFAULTS
from gpucops.synthetic import make_problem, noisy_costs

DISTANCES = (1, 4, 16, 32, 64)
MISSING_PEERS = (
    "benchmarks/peers.py needs the peers from the 'bench' extra: "
    "pip install -e '.[bench]' (or make peers); bioimage-cpp is not installed"
)


@dataclass(frozen=True)
class Problem:
    """One image's AMWC problem and, where known, its ground truth (``classes``/``segments``
    ``[H, W]`` int64, −1 = void)."""

    name: str
    node_costs: torch.Tensor  # [1, K, H, W]
    edge_costs: torch.Tensor  # [1, 2·|D|, H, W]
    partitionable: torch.Tensor  # [K]
    distances: tuple[int, ...]
    classes: torch.Tensor
    segments: torch.Tensor


def load_peers():
    """bioimage-cpp's ``graph.multicut`` and ``segmentation`` modules, or SystemExit saying how
    to install them."""
    try:
        return (
            importlib.import_module("bioimage_cpp.graph"),
            importlib.import_module("bioimage_cpp.graph.multicut"),
            importlib.import_module("bioimage_cpp.segmentation"),
        )
    except ImportError as error:
        raise SystemExit(MISSING_PEERS) from error


def synthetic_problems(sizes: list[tuple[int, int]], seed: int) -> list[Problem]:
    problems = []
    for height, width in sizes:
        p = make_problem(1, height, width, 19, DISTANCES, seed=seed)
        problems.append(
            Problem(f"synthetic {height}×{width}", p.node_costs, p.edge_costs, p.partitionable,
                    p.distances, p.classes[0], p.segments[0])
        )  # fmt: skip
    return problems


def demo_problems(size: tuple[int, int], images: int, seed: int) -> list[Problem]:
    """The scenes ``gpucops demo`` writes, at full resolution, with costs from their ground
    truth (image i's noise seeded by (seed, i), as the demo does)."""
    height, width = size
    with tempfile.TemporaryDirectory() as folder:
        write_synthetic_cityscapes(folder, images, height, width, "val", seed, progress=False)
        dataset = CityscapesPanoptic(folder, "val", distances=(1,), stride=1)
        items = [dataset[i] for i in range(len(dataset))]
    problems = []
    for index, item in enumerate(items):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        nodes, edges = noisy_costs(item["classes"], item["segments"], 19, DISTANCES, generator)
        problems.append(
            Problem(f"demo {height}×{width} #{index}", nodes[None], edges[None],
                    dataset.partitionable, DISTANCES, item["classes"], item["segments"])
        )  # fmt: skip
    return problems


def time_in_turn(
    solvers: dict[str, Callable[[], object]], repeats: int, slow: float
) -> dict[str, tuple[object, float, int]]:
    """Run the solvers in turn, ``repeats`` rounds: name → (last result, median seconds of the
    rounds after the first, runs counted); one whose first round took over ``slow`` s runs once
    and counts that run."""
    times: dict[str, list[float]] = {name: [] for name in solvers}
    results: dict[str, object] = {}
    for round_index in range(repeats):
        for name, solver in solvers.items():
            if round_index > 0 and times[name][0] > slow:
                continue
            start = time.perf_counter()
            results[name] = solver()
            times[name].append(time.perf_counter() - start)
    timed = {name: t[1:] or t[:1] for name, t in times.items()}
    return {
        name: (results[name], statistics.median(timed[name]), len(timed[name])) for name in solvers
    }


def multicut_rows(problem: Problem, args: argparse.Namespace, peers) -> list[dict]:
    """gpucops parallel and sequential vs GAEC and GAEC + Kernighan–Lin on the grid's edge
    costs (K = 1)."""
    bgraph, bmulticut, _ = peers
    height, width = problem.classes.shape
    zeros = torch.zeros(1, 1, height, width)
    _, edges, costs, _ = grid_to_graph(zeros, problem.edge_costs, problem.distances)
    costs = costs.double()
    graph = bgraph.undirected_graph(height * width)
    graph.insert_edges(edges.numpy().astype(np.uint64))
    peer_costs = np.empty(edges.shape[0])
    peer_costs[graph.find_edges(edges.numpy().astype(np.uint64)).astype(np.int64)] = costs.numpy()
    tiles = square_tiles(height, width, DEFAULTS.tile)

    def peer(kernighan_lin: bool) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            objective = bmulticut.MulticutObjective(graph, peer_costs)
            labels = bmulticut.GreedyAdditiveMulticut().optimize(objective)
            if kernighan_lin:  # warm-started from GAEC's labeling
                labels = bmulticut.KernighanLinMulticut().optimize(objective)
            return torch.from_numpy(labels.astype(np.int64))

        return run

    solvers = {
        "gpucops parallel": lambda: gpucops.multicut(edges, costs, tiles=tiles).labels,
        "gpucops sequential": lambda: gpucops.multicut(edges, costs, method="sequential").labels,
        "bioimage-cpp GAEC": peer(False),
    }
    if height * width <= args.kl_limit:
        solvers["bioimage-cpp GAEC+KL"] = peer(True)
    timed = time_in_turn(solvers, args.repeats, args.slow)
    all_cut = costs.sum().item()
    energy = {n: gpucops.multicut_energy(edges, costs, r[0]).item() for n, r in timed.items()}
    gaec = "bioimage-cpp GAEC"
    return [
        {
            "task": "multicut",
            "problem": problem.name,
            "solver": name,
            "seconds": seconds,
            "runs": runs,
            "energy": energy[name],
            "of_gaec": (all_cut - energy[name]) / (all_cut - energy[gaec]),
            "speedup": timed[gaec][1] / seconds,
        }
        for name, (_, seconds, runs) in timed.items()
    ]


def sigmoid(x: torch.Tensor) -> torch.Tensor:
    return torch.sigmoid(x.double())


# SMW input from the AMWC costs. An edge's cost w is a log-odds that its end-points share a
# segment, so p = sigmoid(w) is that probability; a pixel's class probabilities are
# softmax(−node_costs) (node costs are negative logits). The SMW takes all edges in one order of
# decreasing weight: attractive edges merge, mutex edges forbid, semantic edges label a cluster.
# - "classic": the Mutex Watershed's usual split (Wolf et al.): the distance-1 edges attractive
#   (weight p), the long-range ones mutex (weight 1 − p).
# - "signed": every edge is attractive with weight p and mutex with weight 1 − p. Of the two
#   copies the stronger comes first and decides; the weaker one then finds the two clusters
#   joined or kept apart already and does nothing, so this is every edge with w > 0 attractive
#   and every edge with w < 0 mutex, ordered by |w| — the AMWC's own reading of the costs.
# Semantic edges: bioimage-cpp keeps each pixel's strongest class only; its other classes could
# not change anything (the strongest comes first and labels the pixel's cluster for good).
MAPPINGS = ("classic", "signed")


def smw_input(problem: Problem, mapping: str) -> tuple[np.ndarray, list[tuple[int, int]], int]:
    """(affinities ``[spatial channels + K, H, W]`` float32, offsets, attractive channel count)
    of :func:`bioimage_cpp.segmentation.semantic_mutex_watershed`."""
    height, width = problem.classes.shape
    edges, map_index = grid_edges(height, width, problem.distances)
    channel = map_index // (height * width)  # 2i: vertical, 2i+1: horizontal, distance i
    maps = torch.zeros(2 * len(problem.distances), height * width, dtype=torch.float64)
    # the SMW's edge at pixel u with offset o joins u and u + o: u is the upper/left end-point
    maps[channel, edges[:, 0]] = problem.edge_costs.flatten(1)[0, map_index].double()
    offsets = [o for d in problem.distances for o in ((d, 0), (0, d))]
    if mapping == "signed":
        spatial, n_attractive = [sigmoid(maps), sigmoid(-maps)], len(offsets)
        offsets = offsets + offsets
    elif mapping == "classic":
        spatial, n_attractive = [sigmoid(maps[:2]), sigmoid(-maps[2:])], 2
    else:
        raise ValueError(f"mapping must be one of {MAPPINGS}, got {mapping!r}")
    semantic = torch.softmax(-problem.node_costs[0].double(), dim=0).flatten(1)
    affinities = torch.cat([*spatial, semantic]).view(-1, height, width)
    return affinities.float().numpy(), offsets, n_attractive


def smw_labeling(
    segmentation, problem: Problem, inputs: tuple
) -> tuple[torch.Tensor, torch.Tensor]:
    """The SMW's clusters and cluster classes as a panoptic labeling (classes, segments
    ``[H, W]``): clusters without a class take their pixels' cheapest class, stuff is merged per
    class as the AMWC's labelings are."""
    clusters, classes = segmentation.semantic_mutex_watershed(*inputs)
    clusters = torch.from_numpy(clusters.astype(np.int64)).flatten()
    classes = torch.from_numpy(classes).flatten()
    cheapest = problem.node_costs[0].flatten(1).argmin(dim=0)
    classes = torch.where(classes >= 0, classes, cheapest)
    segments = compact_segments(
        classes, clusters, problem.partitionable, torch.zeros_like(classes), 1
    )
    shape = problem.classes.shape
    return classes.view(shape), segments.view(shape)


def panoptic_quality(problem: Problem, classes: torch.Tensor, segments: torch.Tensor) -> float:
    """PQ (All) of one labeling against the problem's ground truth, the project's metric."""
    category_ids = list(range(problem.partitionable.shape[0]))
    metric = PanopticQuality(dict(enumerate(problem.partitionable.tolist())))
    metric.update(
        *panoptic_segments(problem.classes, problem.segments, category_ids),
        *panoptic_segments(classes, segments, category_ids),
    )
    return metric.compute()["All"]["pq"]


def panoptic_rows(problem: Problem, args: argparse.Namespace, peers) -> list[dict]:
    """gpucops parallel and sequential vs the SMW under every mapping (K = 19)."""
    _, _, segmentation = peers
    costs = (problem.node_costs, problem.edge_costs, problem.partitionable, problem.distances)

    def ours(method: str) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        def run() -> tuple[torch.Tensor, torch.Tensor]:
            labeling = gpucops.solve(*costs, method=method)
            return labeling.classes[0], labeling.segments[0]

        return run

    def smw(inputs: tuple) -> Callable[[], tuple[torch.Tensor, torch.Tensor]]:
        return lambda: smw_labeling(segmentation, problem, inputs)

    solvers = {"gpucops parallel": ours("parallel"), "gpucops sequential": ours("sequential")}
    solvers.update({f"SMW {m}": smw(smw_input(problem, m)) for m in args.mappings})
    timed = time_in_turn(solvers, args.repeats, args.slow)
    reference = f"SMW {args.mappings[0]}"
    rows = []
    for name, ((classes, segments), seconds, runs) in timed.items():
        objective = gpucops.objective(*costs[:3], classes[None], segments[None], costs[3])
        rows.append(
            {
                "task": "panoptic", "problem": problem.name, "solver": name, "seconds": seconds,
                "runs": runs, "objective": objective.item(),
                "pq": panoptic_quality(problem, classes, segments),
                "speedup": timed[reference][1] / seconds,
            }
        )  # fmt: skip
    return rows


def table(records: list[dict], markdown: bool) -> str:
    headers = ["task", "problem", "solver", "s", "runs", "energy / objective", "of GAEC",
               "PQ", "× peer"]  # fmt: skip
    rows = [
        [
            r["task"],
            r["problem"],
            r["solver"],
            f"{r['seconds']:.3f}",
            r["runs"],
            f"{r.get('energy', r.get('objective')):.1f}",
            f"{r['of_gaec']:.5f}" if "of_gaec" in r else "—",
            f"{r['pq']:.3f}" if "pq" in r else "—",
            f"{r['speedup']:.1f}",
        ]
        for r in records
    ]
    return (markdown_table if markdown else format_table)(headers, rows)


def size(text: str) -> tuple[int, int]:
    height, width = (int(v) for v in text.split("x"))
    return height, width


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--sizes", nargs="+", type=size, default=[(128, 256), (256, 512), (512, 1024)]
    )
    parser.add_argument("--demo-size", type=size, default=(256, 512))
    parser.add_argument("--demo-images", type=int, default=2, help="0 = no demo problems")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=4, help="rounds, the first a warm-up")
    parser.add_argument("--slow", type=float, default=5.0, help="time once above this (s)")
    parser.add_argument(
        "--kl-limit", type=int, default=256 * 512, help="largest H·W with a GAEC+KL row (time)"
    )
    parser.add_argument("--mappings", nargs="+", choices=MAPPINGS, default=list(MAPPINGS))
    parser.add_argument("--tasks", nargs="+", choices=["multicut", "panoptic"],
                        default=["multicut", "panoptic"])  # fmt: skip
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    parser.add_argument("--json", help="also write the records as JSON here")
    args = parser.parse_args(argv)
    peers = load_peers()
    problems = synthetic_problems(args.sizes, args.seed)
    if args.demo_images:
        problems += demo_problems(args.demo_size, args.demo_images, args.seed)
    records = []
    for problem in problems:
        for task in args.tasks:
            rows = (multicut_rows if task == "multicut" else panoptic_rows)(problem, args, peers)
            for row in rows:
                print(table([row], False).splitlines()[-1], flush=True)
            records += rows
    print()
    print(table(records, args.markdown))
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))
    return records


if __name__ == "__main__":
    main()
