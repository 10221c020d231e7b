"""The solver front: ``solve`` (batched grids) and ``solve_graph`` (general graphs).

Both validate their inputs, run the chosen contraction method, apply the stuff merge and the
compact segment numbering (:func:`gpucops.labeling.compact_segments`), and report the AMWC
objective, on the inputs' device.
"""

from __future__ import annotations

import time

import torch

from ._validate import check_graph_problem, check_grid_problem, check_label_mask
from .grid import grid_to_graph
from .labeling import GraphLabeling, PanopticLabeling, compact_segments
from .objective import objective_graph_validated
from .sequential import contract_sequential

__all__ = ["BACKENDS", "METHODS", "solve", "solve_graph"]

METHODS = ("parallel", "sequential")
BACKENDS = ("auto", "cpu", "cuda")


def _check_method(method: str, backend: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if method == "parallel":
        raise NotImplementedError(
            "method='parallel' (the batched contraction) is not built yet; use method='sequential'"
        )
    if backend == "cuda":
        raise ValueError(
            "backend='cuda' is not available for method='sequential' (a CPU algorithm)"
        )


def _solve_validated(
    node_costs: torch.Tensor,
    edges: torch.Tensor,
    edge_costs: torch.Tensor,
    partitionable: torch.Tensor,
    image_index: torch.Tensor,
    num_images: int,
    label_mask: torch.Tensor | None,
) -> GraphLabeling:
    device = node_costs.device
    start = time.perf_counter()
    classes, clusters, merges = contract_sequential(
        node_costs, edges, edge_costs, image_index, label_mask
    )
    classes, clusters = classes.to(device), clusters.to(device)
    seconds = time.perf_counter() - start
    segments = compact_segments(classes, clusters, partitionable, image_index, num_images)
    value = objective_graph_validated(
        node_costs, edges, edge_costs, partitionable, classes, segments, image_index, num_images
    )
    info = {"method": "sequential", "backend": "cpu", "merges": merges, "solver_seconds": seconds}
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
    Returns:
        :class:`GraphLabeling` on the inputs' device: ``classes [N]``, ``clusters [N]`` (compact per
        image), ``objective [num_images]`` float64.
    """
    node_costs, edges, edge_costs, partitionable, image_index, num_images = check_graph_problem(
        node_costs, edges, edge_costs, partitionable, image_index
    )
    label_mask = check_label_mask(label_mask, num_images, node_costs.shape[1], image_index)
    _check_method(method, backend)
    return _solve_validated(
        node_costs, edges, edge_costs, partitionable, image_index, num_images, label_mask
    )


def solve(
    node_costs: torch.Tensor,
    edge_costs: torch.Tensor,
    partitionable: torch.Tensor,
    distances: tuple[int, ...] = (1, 4, 16, 32, 64),
    method: str = "parallel",
    backend: str = "auto",
) -> PanopticLabeling:
    """Solve a batch of AMWC problems on pixel grids.

    Args:
        node_costs: ``[B, K, H, W]`` float; lower is better (e.g. −semantic logits).
        edge_costs: ``[B, 2·|D|, H, W]`` float; channel 2i holds the vertical edges of distance
            ``distances[i]``, 2i+1 the horizontal ones (official COPS layout, see
            :mod:`gpucops.grid`); positive = the two pixels want the same segment.
        partitionable: ``[K]`` bool, True for thing classes.
        distances: D, strictly increasing integers ≥ 1, relative to this grid.
        method, backend: as in :func:`solve_graph`.
    Returns:
        :class:`PanopticLabeling`: ``classes [B, H, W]``, ``segments [B, H, W]`` (compact per
        image), ``objective [B]`` float64, on the inputs' device.
    """
    node_costs, edge_costs, partitionable, distances = check_grid_problem(
        node_costs, edge_costs, partitionable, distances
    )
    batch, _, height, width = node_costs.shape
    _check_method(method, backend)
    graph_nodes, edges, graph_edges, image_index = grid_to_graph(node_costs, edge_costs, distances)
    result = _solve_validated(
        graph_nodes, edges, graph_edges, partitionable, image_index, batch, None
    )
    shape = (batch, height, width)
    return PanopticLabeling(
        result.classes.view(shape), result.clusters.view(shape), result.objective, result.info
    )
