"""The solver front: ``solve`` (batched grids) and ``solve_graph`` (general graphs).

Both validate their inputs, run the chosen contraction method, apply the stuff merge and the
compact segment numbering (:func:`gpucops.labeling.compact_segments`), and report the AMWC
objective, on the inputs' device.
"""

from __future__ import annotations

import time

import torch

from ._validate import (
    as_partitionable,
    check_costs,
    check_distances,
    check_edges,
    check_image_index,
    check_label_mask,
)
from .grid import grid_to_graph
from .labeling import GraphLabeling, PanopticLabeling, compact_segments
from .objective import objective_graph
from .sequential import contract_sequential

__all__ = ["BACKENDS", "METHODS", "solve", "solve_graph"]

METHODS = ("parallel", "sequential")
BACKENDS = ("auto", "cpu", "cuda")


def _check_method(method: str, backend: str, device: torch.device) -> None:
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
    value = objective_graph(
        node_costs,
        edges,
        edge_costs,
        partitionable,
        classes,
        segments,
        image_index if num_images else None,
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
    node_costs = check_costs(node_costs, "node_costs", 2)
    num_nodes, num_classes = node_costs.shape
    if num_classes == 0:
        raise ValueError("node_costs must have at least one class (K = 0)")
    device = node_costs.device
    edges = check_edges(edges, num_nodes, device)
    edge_costs = check_costs(edge_costs, "edge_costs", 1, device)
    if edge_costs.shape[0] != edges.shape[0]:
        raise ValueError(
            f"edge_costs must have shape [E] = [{edges.shape[0]}], got {tuple(edge_costs.shape)}"
        )
    partitionable = as_partitionable(partitionable, num_classes, device)
    image_index, num_images = check_image_index(image_index, num_nodes, edges, device)
    label_mask = check_label_mask(label_mask, num_images, num_classes, image_index)
    _check_method(method, backend, device)
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
    node_costs = check_costs(node_costs, "node_costs", 4)
    batch, num_classes, height, width = node_costs.shape
    if num_classes == 0:
        raise ValueError("node_costs must have at least one class (K = 0)")
    distances = check_distances(distances, height, width)
    edge_costs = check_costs(edge_costs, "edge_costs", 4, node_costs.device)
    expected = (batch, 2 * len(distances), height, width)
    if tuple(edge_costs.shape) != expected:
        raise ValueError(
            f"edge_costs must have shape {list(expected)}, got {tuple(edge_costs.shape)}"
        )
    partitionable = as_partitionable(partitionable, num_classes, node_costs.device)
    _check_method(method, backend, node_costs.device)
    graph_nodes, edges, graph_edges, image_index = grid_to_graph(node_costs, edge_costs, distances)
    result = _solve_validated(
        graph_nodes, edges, graph_edges, partitionable, image_index, batch, None
    )
    shape = (batch, height, width)
    return PanopticLabeling(
        result.classes.view(shape), result.clusters.view(shape), result.objective, result.info
    )
