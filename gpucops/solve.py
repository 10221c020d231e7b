"""The solver front: ``solve`` (batched grids) and ``solve_graph`` (general graphs).

Both validate their inputs, run the chosen contraction method (the parallel one followed by
boundary-move rounds, :mod:`gpucops.refine`), apply the stuff merge and the compact segment
numbering (:func:`gpucops.labeling.compact_segments`), and report the AMWC
objective, on the inputs' device.
"""

from __future__ import annotations

import time

import torch

from ._validate import (
    GraphProblem,
    check_blocks,
    check_graph_problem,
    check_grid_problem,
    check_label_mask,
)
from .blocks import NodeBlocks, grid_tiles
from .contraction_kernels import kernels_for
from .grid import grid_graph
from .labeling import GraphLabeling, PanopticLabeling, compact_segments
from .objective import objective_graph_validated
from .parallel import contract_parallel, masked_class_costs
from .refine import refine_labeling
from .sequential import contract_sequential

__all__ = ["BACKENDS", "METHODS", "solve", "solve_graph"]

METHODS = ("parallel", "sequential")
BACKENDS = ("auto", "cpu", "cuda")
# boundary-move rounds after the parallel contraction: off by default. Moves across classes lift
# the objective past the sequential greedy's but lowered PQ on trained-network costs (tiny
# synthetic model, validation PQ 0.186 → 0.026); moves within a class left PQ unchanged and gain
# little (benchmarks/RESULTS.md); 20 converges on the benchmarks
REFINE_ROUNDS = 0
# The defaults favour quality (benchmarks/RESULTS.md, 48 synthetic problems at 128×256 and
# 256×512): the exact greedy inside 16×16 pixel tiles first, then rounds in which only the top
# 30 % of each image's scores may merge kept ≥ 99.5 % of the sequential greedy's objective
# improvement on every one (the tiles alone: ≥ 98.5 %; on 4–8 seeds the band alone ≥ 98.7 %,
# neither ≥ 98.0 %), in 0.5–0.9× the time of the plain rounds. tile=0, top_fraction=None: the
# plain rounds.
TILE = 16
TOP_FRACTION = 0.3


def _compute_device(method: str, backend: str, device: torch.device) -> torch.device:
    """Where the contraction runs: ``auto`` follows the inputs; results return to the inputs'."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if method == "sequential":
        if backend == "cuda":
            raise ValueError(
                "backend='cuda' is not available for method='sequential' (a CPU algorithm)"
            )
        return torch.device("cpu")
    if backend == "cuda":
        if not torch.cuda.is_available():
            raise ValueError("backend='cuda' needs a CUDA device, and none is available")
        return device if device.type == "cuda" else torch.device("cuda")
    if backend == "cpu" or device.type != "cuda":
        return torch.device("cpu")
    return device


def _solve_validated(
    problem: GraphProblem,
    label_mask: torch.Tensor | None,
    method: str,
    compute: torch.device,
    epsilon: float | None,
    threshold: float | None,
    top_fraction: float | None,
    refine: int,
    refine_classes: bool,
    free_leaves: bool,
    coalesced: bool = False,
    blocks: NodeBlocks | torch.Tensor | None = None,
) -> GraphLabeling:
    node_costs, edges, edge_costs, partitionable, image_index, num_images = problem
    device = node_costs.device
    start = time.perf_counter()
    info: dict = {"method": method, "device": str(compute)}
    if method == "sequential":
        classes, clusters, merges = contract_sequential(
            node_costs, edges, edge_costs, image_index, label_mask
        )
        info["merges"] = merges
    else:
        result = contract_parallel(
            node_costs.to(compute),
            edges.to(compute),
            edge_costs.to(compute),
            image_index.to(compute),
            num_images,
            None if label_mask is None else label_mask.to(compute),
            epsilon,
            threshold=threshold,
            free_leaves=free_leaves,
            coalesced=coalesced,
            top_fraction=top_fraction,
            blocks=blocks,
        )
        classes, clusters = result.classes, result.clusters
        info["rounds"] = len(result.merges_per_round)
        info["merges_per_round"] = result.merges_per_round
        info["block_merges"] = result.block_merges
        info["merges"] = result.block_merges + sum(result.merges_per_round)
        if refine:
            mask = None if label_mask is None else label_mask.to(compute)
            costs = masked_class_costs(node_costs.to(compute), mask, image_index.to(compute))
            classes, clusters, moves = refine_labeling(
                costs, edges.to(compute), edge_costs.to(compute).double(), classes, clusters,
                partitionable.to(compute), image_index.to(compute), num_images, refine,
                kernels_for(compute), change_classes=refine_classes,
            )  # fmt: skip
            info["refine_moves"] = moves
    classes, clusters = classes.to(device), clusters.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    info["solver_seconds"] = time.perf_counter() - start
    segments = compact_segments(classes, clusters, partitionable, image_index, num_images)
    # the contraction kernels (already built for a parallel solve) test the cuts in one pass;
    # the sequential reference keeps the plain torch objective
    value = objective_graph_validated(
        node_costs, edges, edge_costs, partitionable, classes, segments, image_index, num_images,
        panoptic=True, kernels=kernels_for(device) if method == "parallel" else None,
    )  # fmt: skip
    return GraphLabeling(classes, segments, value, info)


def solve_graph(
    node_costs: torch.Tensor,
    edges: torch.Tensor,
    edge_costs: torch.Tensor,
    partitionable: torch.Tensor,
    image_index: torch.Tensor | None = None,
    method: str = "parallel",
    backend: str = "auto",
    *,
    label_mask: torch.Tensor | None = None,
    epsilon: float | None = None,
    threshold: float | None = None,
    refine: int = REFINE_ROUNDS,
    refine_classes: bool = False,
    free_leaves: bool = True,
    top_fraction: float | None = TOP_FRACTION,
    blocks: torch.Tensor | None = None,
) -> GraphLabeling:
    """Solve the AMWC on a general graph (possibly many images, block-diagonal).

    Args:
        node_costs: ``[N, K]`` float; cost of giving node i class k, lower is better.
        edges: ``[E, 2]`` int32/int64 node pairs; duplicates are summed; no self-loops.
        edge_costs: ``[E]`` float, paid when the edge is cut: positive = attractive.
        partitionable: ``[K]`` bool, True for thing classes (many clusters), False for stuff.
        image_index: ``[N]`` int image of each node (B = max + 1), or None for one image; edges
            must not join two images.
        method: ``"parallel"`` (batched star contraction) or ``"sequential"`` (the reference
            greedy, Algorithm 2 of the COPS supplementary).
        backend: ``"auto"`` (follow the inputs' device), ``"cpu"`` or ``"cuda"``.
        label_mask: ``[num_images, K]`` bool, True where an image may not use a label.
        epsilon: goodness gate of the parallel star merge, in [0, 1): a leaf joins a centre only
            if its edge's score is ≥ (1 − ε) × the centre's best; None (default) = no gate
            (fewest rounds); smaller ε = more rounds, closer to the sequential greedy.
        threshold: α in [0, 1) for the parallel solver: each round only edges with a score of at
            least α × the best score of their image may merge, which follows the greedy order in
            bands (more rounds, closer to the sequential greedy; see benchmarks/RESULTS.md);
            None (default) = no threshold.
        top_fraction: in (0, 1] for the parallel solver: each round only the top fraction of
            each image's positive scores may merge — bands of the greedy order of equal size
            rather than of equal score, for quality at the cost of rounds. 0.3 (default): after
            the tile pre-pass, ≥ 99.5 % of the sequential greedy's objective improvement on
            every benchmark problem at about the time of all (benchmarks/RESULTS.md); None =
            all (fewest rounds).
        refine: at most this many rounds of boundary moves after the parallel contraction
            (independent single-node moves that lower the objective, :mod:`gpucops.refine`);
            0 (default) = none; 20 reaches a local optimum on the benchmark problems.
        refine_classes: let those moves change a node's class (join a neighbouring segment of
            another class). False (default): nodes only move between segments of their own
            thing class, so the semantic labeling stays the contraction's. True lifts the
            objective past the sequential greedy's on the benchmarks, but on trained-network
            costs it lowered PQ sharply (benchmarks/RESULTS.md).
        free_leaves: besides the coin's stars, every cluster that no cluster picked joins the
            cluster it picked when that one is a star's root or alone (default True): 2.5–3×
            fewer rounds at a 0.1 % lower objective improvement on the benchmarks; False =
            the coin's stars and mutual pairs only.
        blocks: ``[N]`` int block of every node, in [0, N): the parallel solver first runs
            the sequential greedy inside every block, over the edges within it (as
            :func:`solve`'s ``tile``, for any graph: blocks of nearby nodes help most); None
            (default) = no pre-pass.
    Returns:
        :class:`GraphLabeling` on the inputs' device: ``classes [N]``, ``clusters [N]`` (compact per
        image), ``objective [num_images]`` float64.
    """
    problem = check_graph_problem(node_costs, edges, edge_costs, partitionable, image_index)
    label_mask = check_label_mask(
        label_mask, problem.num_images, problem.node_costs.shape[1], problem.image_index
    )
    compute = _compute_device(method, backend, problem.node_costs.device)
    options = _checked_options(
        epsilon, threshold, top_fraction, refine, refine_classes, free_leaves
    )
    blocks = check_blocks(blocks, problem.node_costs.shape[0], problem.node_costs.device)
    return _solve_validated(problem, label_mask, method, compute, *options, blocks=blocks)


def _checked_options(
    epsilon: float | None,
    threshold: float | None,
    top_fraction: float | None,
    refine: object,
    refine_classes: object,
    free_leaves: object,
) -> tuple[float | None, float | None, float | None, int, bool, bool]:
    """The parallel solver's options, checked: (ε, α, top fraction, refinement rounds, class
    changes, free leaves)."""
    if top_fraction is not None and not 0 < top_fraction <= 1:
        raise ValueError(f"top_fraction must lie in (0, 1] or be None, got {top_fraction!r}")
    _check_count(refine, "refine")
    for name, flag in (("refine_classes", refine_classes), ("free_leaves", free_leaves)):
        if not isinstance(flag, bool):
            raise ValueError(f"{name} must be True or False, got {flag!r}")
    fractions = _check_fraction(epsilon, "epsilon"), _check_fraction(threshold, "threshold")
    return *fractions, top_fraction, refine, refine_classes, free_leaves


def _check_count(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer ≥ 0, got {value!r}")
    return value


def _check_fraction(value: float | None, name: str) -> float | None:
    if value is not None and not 0 <= value < 1:
        raise ValueError(f"{name} must lie in [0, 1) or be None, got {value!r}")
    return value


def solve(
    node_costs: torch.Tensor,
    edge_costs: torch.Tensor,
    partitionable: torch.Tensor,
    distances: tuple[int, ...] = (1, 4, 16, 32, 64),
    method: str = "parallel",
    backend: str = "auto",
    epsilon: float | None = None,
    threshold: float | None = None,
    label_mask: torch.Tensor | None = None,
    refine: int = REFINE_ROUNDS,
    refine_classes: bool = False,
    free_leaves: bool = True,
    top_fraction: float | None = TOP_FRACTION,
    tile: int = TILE,
) -> PanopticLabeling:
    """Solve a batch of AMWC problems on pixel grids.

    Args:
        node_costs: ``[B, K, H, W]`` float; lower is better (e.g. −semantic logits).
        edge_costs: ``[B, 2·|D|, H, W]`` float; channel 2i holds the vertical edges of distance
            ``distances[i]``, 2i+1 the horizontal ones (official COPS layout, see
            :mod:`gpucops.grid`); positive = the two pixels want the same segment.
        partitionable: ``[K]`` bool, True for thing classes.
        distances: D, strictly increasing integers ≥ 1, relative to this grid.
        method, backend, epsilon, threshold, refine, refine_classes, free_leaves,
            top_fraction: as in :func:`solve_graph`.
        label_mask: ``[B, K]`` bool, True where an image may not use a label (e.g. the padding
            labels of a batch of multiway cuts with different label counts).
        tile: the parallel solver first runs the sequential greedy inside every ``tile × tile``
            pixel tile, over the edges within the tile, all tiles at once (:mod:`gpucops.blocks`),
            then its rounds on the contracted graph, so the first merges — where the rounds lose
            most — follow the greedy order. 16 (default): with the default ``top_fraction``,
            ≥ 99.5 % of the sequential greedy's objective improvement on every benchmark problem
            (without tiles ≥ 98.7 %) in 0.5–0.9× the time of the plain rounds
            (benchmarks/RESULTS.md); 0 = no pre-pass. Full-resolution problems made from
            stride-4 costs: 4 (see :func:`gpucops.inference.full_resolution_costs`).
    Returns:
        :class:`PanopticLabeling`: ``classes [B, H, W]``, ``segments [B, H, W]`` (compact per
        image), ``objective [B]`` float64, on the inputs' device.
    """
    node_costs, edge_costs, partitionable, distances = check_grid_problem(
        node_costs, edge_costs, partitionable, distances
    )
    batch, _, height, width = node_costs.shape
    compute = _compute_device(method, backend, node_costs.device)
    # the parallel solver works on edges sorted by end-points: listing them so skips a sort
    parallel = method == "parallel"
    nodes, edges, weights, image_index = grid_graph(
        node_costs, edge_costs, distances, sort_edges=parallel, share_edges=True
    )
    graph = GraphProblem(nodes, edges, weights, partitionable, image_index, batch)
    label_mask = check_label_mask(label_mask, batch, node_costs.shape[1], image_index)
    options = _checked_options(
        epsilon, threshold, top_fraction, refine, refine_classes, free_leaves
    )
    _check_count(tile, "tile")
    blocks = grid_tiles(height, width, distances, tile, compute) if parallel and tile else None
    result = _solve_validated(
        graph, label_mask, method, compute, *options, coalesced=parallel, blocks=blocks
    )
    shape = (batch, height, width)
    return PanopticLabeling(
        result.classes.view(shape), result.clusters.view(shape), result.objective, result.info
    )
