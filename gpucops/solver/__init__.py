"""The AMWC solver: ``solve`` (batched pixel grids) and ``solve_graph`` (general graphs).

Both validate their inputs, build the graph, run the chosen method — the batched parallel
contraction (:mod:`gpucops.solver.rounds`, options in :mod:`gpucops.solver.options`) or the
sequential greedy of the COPS supplementary (:mod:`gpucops.solver.sequential`) — apply the stuff
merge and the compact segment numbering (:func:`gpucops.labeling.compact_segments`), and report
the AMWC objective, on the inputs' device.

The package, one job per module: ``options`` (the parallel method's defaults), ``rounds`` (its
loop), ``steps`` (the torch reference of every step), ``backend`` (the same steps as the kernels
of ``cuda/contraction.cu``), ``graph`` (the contraction of a cluster graph), ``tiles`` (the exact
greedy pre-pass's tiles), ``parallel`` (inputs → graph → loop), ``sequential`` + ``csrc/`` (the
reference greedy), ``moves`` (:func:`refine`, boundary moves after a solve), ``hostbuild`` (the
host builds).
"""

from __future__ import annotations

import time

import torch

from .._validate import (
    GraphProblem,
    check_graph_problem,
    check_grid_problem,
    check_label_mask,
    check_tiles,
)
from ..grid import grid_graph
from ..labeling import GraphLabeling, PanopticLabeling, compact_segments
from ..objectives import objective_graph_validated
from .backend import steps_for
from .moves import refine
from .options import DEFAULTS, ParallelOptions
from .parallel import contract_parallel
from .sequential import contract_sequential
from .steps import TorchSteps
from .tiles import Tiles, grid_tiles

__all__ = [
    "BACKENDS",
    "DEFAULTS",
    "METHODS",
    "ParallelOptions",
    "refine",
    "solve",
    "solve_graph",
]

METHODS = ("parallel", "sequential")
BACKENDS = ("auto", "cpu", "cuda")


def solve(
    node_costs: torch.Tensor,
    edge_costs: torch.Tensor,
    partitionable: torch.Tensor,
    distances: tuple[int, ...] = (1, 4, 16, 32, 64),
    *,
    method: str = "parallel",
    backend: str = "auto",
    tile: int = DEFAULTS.tile,
    top_fraction: float | None = DEFAULTS.top_fraction,
    tail: int = DEFAULTS.tail,
    tail_edges: int = DEFAULTS.tail_edges,
    label_mask: torch.Tensor | None = None,
) -> PanopticLabeling:
    """Solve a batch of AMWC problems on pixel grids.

    Args:
        node_costs: ``[B, K, H, W]`` float; lower is better (e.g. −semantic logits).
        edge_costs: ``[B, 2·|D|, H, W]`` float; channel 2i holds the vertical edges of distance
            ``distances[i]``, 2i+1 the horizontal ones (official COPS layout, see
            :mod:`gpucops.grid`); positive = the two pixels want the same segment.
        partitionable: ``[K]`` bool, True for thing classes.
        distances: D, strictly increasing integers ≥ 1, relative to this grid.
        method: ``"parallel"`` (batched contraction) or ``"sequential"`` (the reference greedy,
            Algorithm 2 of the COPS supplementary).
        backend: ``"auto"`` (follow the inputs' device), ``"cpu"`` or ``"cuda"``.
        tile: side of the square pixel tiles inside which the parallel method first runs the
            exact sequential greedy (0 = none; the sequential method ignores it); see
            :class:`~gpucops.solver.ParallelOptions`.
            Full-resolution problems made from stride-4 costs take the stride
            (:func:`gpucops.inference.build_problem` pairs them with it).
        top_fraction: in (0, 1], the share of each image's positive scores that may merge per
            round of the parallel method (the sequential one ignores it), or None for all; see
            :class:`~gpucops.solver.ParallelOptions`.
        tail: the parallel method finishes an image with the exact sequential greedy once it
            has at most this many clusters (0 = rounds to the end); see
            :class:`~gpucops.solver.ParallelOptions`.
        tail_edges: with a tail, the image is finished as well once it has at most this many
            edges (0 = the cluster count alone).
        label_mask: ``[B, K]`` bool, True where an image may not use a label (e.g. the padding
            labels of a batch of multiway cuts with different label counts).
    Returns:
        :class:`PanopticLabeling`: ``classes [B, H, W]``, ``segments [B, H, W]`` (compact per
        image), ``objective [B]`` float64, on the inputs' device.
    """
    node_costs, edge_costs, partitionable, distances = check_grid_problem(
        node_costs, edge_costs, partitionable, distances
    )
    batch, _, height, width = node_costs.shape
    compute = _compute_device(method, backend, node_costs.device)
    options = ParallelOptions(tile, top_fraction, tail, tail_edges)
    # the parallel method works on edges sorted by end-points: listing them so skips a sort
    parallel = method == "parallel"
    nodes, edges, weights, image_index = grid_graph(
        node_costs, edge_costs, distances, sort_edges=parallel, share_edges=True
    )
    graph = GraphProblem(nodes, edges, weights, partitionable, image_index, batch)
    label_mask = check_label_mask(label_mask, batch, node_costs.shape[1], image_index)
    tiles = grid_tiles(height, width, distances, tile, compute) if parallel and tile else None
    result = _solve(graph, label_mask, method, compute, options, tiles, coalesced=parallel)
    shape = (batch, height, width)
    return PanopticLabeling(
        result.classes.view(shape), result.segments.view(shape), result.objective, result.info
    )


def solve_graph(
    node_costs: torch.Tensor,
    edges: torch.Tensor,
    edge_costs: torch.Tensor,
    partitionable: torch.Tensor,
    image_index: torch.Tensor | None = None,
    *,
    method: str = "parallel",
    backend: str = "auto",
    tiles: torch.Tensor | None = None,
    top_fraction: float | None = DEFAULTS.top_fraction,
    tail: int = DEFAULTS.tail,
    tail_edges: int = DEFAULTS.tail_edges,
    label_mask: torch.Tensor | None = None,
) -> GraphLabeling:
    """Solve the AMWC on a general graph (possibly many images, block-diagonal).

    Args:
        node_costs: ``[N, K]`` float; cost of giving node i class k, lower is better.
        edges: ``[E, 2]`` int32/int64 node pairs; duplicates are summed; no self-loops.
        edge_costs: ``[E]`` float, paid when the edge is cut: positive = attractive.
        partitionable: ``[K]`` bool, True for thing classes (many clusters), False for stuff.
        image_index: ``[N]`` int image of each node (B = max + 1), or None for one image; edges
            must not join two images.
        method, backend, top_fraction, tail, tail_edges, label_mask: as in :func:`solve`
            (``label_mask``:
            ``[num_images, K]``).
        tiles: ``[N]`` int tile of every node, in ``[0, N)``: the parallel method first runs the
            exact sequential greedy inside every tile, over the edges within it (as
            :func:`solve`'s ``tile``, for any graph: tiles of nearby nodes help most); None
            (default) = no pre-pass.
    Returns:
        :class:`GraphLabeling` on the inputs' device: ``classes [N]``, ``segments [N]`` (compact
        per image), ``objective [num_images]`` float64.
    """
    problem = check_graph_problem(node_costs, edges, edge_costs, partitionable, image_index)
    num_nodes, num_classes = problem.node_costs.shape
    label_mask = check_label_mask(label_mask, problem.num_images, num_classes, problem.image_index)
    compute = _compute_device(method, backend, problem.node_costs.device)
    options = ParallelOptions(top_fraction=top_fraction, tail=tail, tail_edges=tail_edges)
    tiles = check_tiles(tiles, num_nodes, problem.node_costs.device)
    # image ids may be sparse (any ids ≥ 0): solve the images that hold nodes under compact ids,
    # so that no step loops over or allocates for the empty ones
    present = torch.unique(problem.image_index)
    if present.numel() == problem.num_images:
        return _solve(problem, label_mask, method, compute, options, tiles)
    compact = problem._replace(
        image_index=torch.searchsorted(present, problem.image_index), num_images=present.numel()
    )
    mask = None if label_mask is None else label_mask[present]
    result = _solve(compact, mask, method, compute, options, tiles)
    objective = result.objective.new_zeros(problem.num_images).index_copy_(
        0, present, result.objective
    )
    return GraphLabeling(result.classes, result.segments, objective, result.info)


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


def _solve(
    problem: GraphProblem,
    label_mask: torch.Tensor | None,
    method: str,
    compute: torch.device,
    options: ParallelOptions,
    tiles: Tiles | torch.Tensor | None,
    coalesced: bool = False,
) -> GraphLabeling:
    """Validated problem → method → stuff merge and compact segments → objective."""
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
            node_costs.to(compute), edges.to(compute), edge_costs.to(compute),
            image_index.to(compute), num_images,
            None if label_mask is None else label_mask.to(compute),
            None if tiles is None else tiles.to(compute), options, steps_for(compute),
            coalesced=coalesced,
        )  # fmt: skip
        classes, clusters = result.classes, result.clusters
        info["rounds"] = len(result.merges_per_round)
        info["merges_per_round"] = result.merges_per_round
        info["tile_merges"] = result.tile_merges
        info["tail_merges"] = result.tail_merges
        info["merges"] = result.tile_merges + sum(result.merges_per_round)
    classes, clusters = classes.to(device), clusters.to(device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    info["solver_seconds"] = time.perf_counter() - start
    segments = compact_segments(classes, clusters, partitionable, image_index, num_images)
    # an edge is cut exactly when its end-points' panoptic segments differ: one pass of the
    # kernels (already built for a parallel solve) or of the torch step
    steps = steps_for(device) if method == "parallel" else TorchSteps()
    value = objective_graph_validated(
        node_costs, edges, edge_costs, partitionable, classes, segments, image_index, num_images,
        cut=steps.edge_cut(edges, segments),
    )  # fmt: skip
    return GraphLabeling(classes, segments, value, info)
