"""Multicut (correlation clustering) on any graph: the AMWC with one partitionable class.

With K = 1, zero node costs and the class partitionable, the AMWC objective is the multicut
energy — the sum of the costs of the cut edges — so :func:`multicut` is a thin front over
:func:`gpucops.solve_graph`: same methods (the batched parallel contraction on CPU or GPU, the
sequential greedy, which for K = 1 is greedy additive edge contraction, GAEC), same validation,
many graphs at once through ``image_index``.

Sign convention (that of nifty, elf and bioimage-cpp): an edge's cost is paid when the edge is
cut, so a **positive cost is attractive** (its end-points want one cluster) and a negative one
repulsive; **lower energy is better**; the labeling with every node alone ("all cut") has energy
= the sum of all edge costs, the one with every node in one cluster energy 0.
``bioimage_cpp.graph.multicut.MulticutObjective(graph, costs).energy(labels)`` gives the same
number for the same graph (bioimage-cpp keeps one edge per node pair, where this module sums
duplicates).
"""

from __future__ import annotations

import numbers

import torch

from ._validate import (
    check_costs,
    check_edges,
    check_image_index,
    check_labels,
    require_same_device,
)
from .labeling import MulticutLabeling
from .objectives import objective_graph_validated
from .solver import DEFAULTS, solve_graph

__all__ = ["multicut", "multicut_energy"]

# larger than any node id: lets check_edges validate edges before the node count is known
_UNBOUNDED = 2**62


def multicut(
    edges: torch.Tensor,
    edge_costs: torch.Tensor,
    *,
    num_nodes: int | None = None,
    image_index: torch.Tensor | None = None,
    method: str = "parallel",
    backend: str = "auto",
    tiles: torch.Tensor | None = None,
    top_fraction: float | None = DEFAULTS.top_fraction,
) -> MulticutLabeling:
    """Partition a graph (or many, block-diagonal) by minimising the multicut energy.

    energy(labels) = Σ over edges {u, v} with ``labels[u] != labels[v]`` of ``edge_costs[e]``;
    positive cost = attractive, lower energy = better (nifty/elf/bioimage-cpp's convention).

    Example::

        import torch, gpucops

        edges = torch.tensor([[0, 1], [1, 2], [2, 3], [0, 3]])
        costs = torch.tensor([2.0, -1.0, 3.0, -0.5])  # > 0: join, < 0: keep apart
        mc = gpucops.multicut(edges, costs)
        mc.labels  # tensor([0, 0, 1, 1]): clusters {0, 1} and {2, 3}
        mc.energy  # tensor([-1.5], dtype=torch.float64): edges 1–2 and 0–3 are cut

    Args:
        edges: ``[E, 2]`` int32/int64 node pairs, end-points in ``[0, num_nodes)``, no
            self-loops; duplicate pairs (either orientation) count as one edge with the summed
            cost.
        edge_costs: ``[E]`` float (float16/bfloat16 become float32), finite: paid when the edge
            is cut.
        num_nodes: N; None = ``len(image_index)`` if given, else the largest end-point + 1.
            Nodes without edges are clusters of their own.
        image_index: ``[N]`` int graph of each node (B = max + 1), or None for one graph;
            edges must not join two graphs. A batch is solved as its graphs would be alone.
        method: ``"parallel"`` (batched contraction rounds on the tensors' device) or
            ``"sequential"`` (GAEC: always the contraction of the most attractive edge).
        backend: ``"auto"`` (follow the inputs' device), ``"cpu"`` or ``"cuda"``.
        tiles: ``[N]`` int, a tile per node in ``[0, N)``: the parallel method first runs the
            exact GAEC inside every tile (nearby nodes joined by strong edges help most; on a
            pixel grid :func:`gpucops.grid.square_tiles`); None = no pre-pass.
        top_fraction: the parallel method's share of each graph's positive scores that may
            merge per round (lower = closer to GAEC, more rounds), or None for all; see
            :class:`gpucops.solver.ParallelOptions`.
    Returns:
        :class:`MulticutLabeling` on the inputs' device: ``labels [N]`` int64 cluster ids,
        compact per graph from 0 in the order of each cluster's first node; ``energy [B]``
        float64; ``info`` (method, rounds, merges, seconds).
    Raises:
        ValueError: naming the argument, for bad shapes, dtypes, devices, values or options.
    """
    edge_costs = check_costs(edge_costs, "edge_costs", 1)
    device = edge_costs.device
    require_same_device(edges, "edges", device)
    require_same_device(image_index, "image_index", device)
    num_nodes = _node_count(num_nodes, edges, image_index, device)
    node_costs = torch.zeros(num_nodes, 1, dtype=edge_costs.dtype, device=device)
    partitionable = torch.ones(1, dtype=torch.bool, device=device)
    result = solve_graph(
        node_costs, edges, edge_costs, partitionable, image_index, method=method,
        backend=backend, tiles=tiles, top_fraction=top_fraction,
    )  # fmt: skip
    return MulticutLabeling(result.segments, result.objective, result.info)


def multicut_energy(
    edges: torch.Tensor,
    edge_costs: torch.Tensor,
    labels: torch.Tensor,
    *,
    image_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """The multicut energy of a labeling: Σ of ``edge_costs[e]`` over the edges whose
    end-points have different ``labels`` (positive = attractive, lower = better; the value
    bioimage-cpp's ``MulticutObjective.energy`` gives).

    Args:
        edges: ``[E, 2]`` int32/int64 node pairs in ``[0, N)``, no self-loops.
        edge_costs: ``[E]`` float, finite.
        labels: ``[N]`` int32/int64 cluster of every node (any ids; compared within a graph).
        image_index: ``[N]`` int graph of each node, or None for one graph.
    Returns:
        ``[B]`` float64, the energy of each graph (summed in float64).
    """
    edge_costs = check_costs(edge_costs, "edge_costs", 1)
    device = edge_costs.device
    labels = check_labels(labels, "labels", _vector_shape(labels), device)
    num_nodes = labels.shape[0]
    edges = _checked_edges(edges, edge_costs, num_nodes, device)
    image_index, num_images = check_image_index(image_index, num_nodes, edges, device)
    return objective_graph_validated(
        torch.zeros(num_nodes, 1, dtype=edge_costs.dtype, device=device), edges, edge_costs,
        torch.ones(1, dtype=torch.bool, device=device), torch.zeros_like(labels), labels,
        image_index, num_images,
    )  # fmt: skip


def _node_count(
    num_nodes: object, edges: torch.Tensor, image_index: object, device: torch.device
) -> int:
    """N: ``num_nodes`` checked, or inferred from ``image_index`` or the edges."""
    if num_nodes is not None:
        integral = isinstance(num_nodes, numbers.Integral) and not isinstance(num_nodes, bool)
        if not integral or num_nodes < 0:
            raise ValueError(f"num_nodes must be an integer ≥ 0 or None, got {num_nodes!r}")
        return int(num_nodes)
    if isinstance(image_index, torch.Tensor) and image_index.dim() == 1:
        return image_index.shape[0]
    edges = check_edges(edges, _UNBOUNDED, device)
    return int(edges.max()) + 1 if edges.numel() else 0


def _checked_edges(
    edges: object, edge_costs: torch.Tensor, num_nodes: int, device: torch.device
) -> torch.Tensor:
    """``edges [E, 2]`` int64 in ``[0, N)``, one per edge cost, on ``device``."""
    require_same_device(edges, "edges", device)
    edges = check_edges(edges, num_nodes, device)
    if edges.shape[0] != edge_costs.shape[0]:
        raise ValueError(
            f"edge_costs must have shape [E] = [{edges.shape[0]}], got {tuple(edge_costs.shape)}"
        )
    return edges


def _vector_shape(labels: object) -> tuple[int, ...]:
    """The shape ``labels`` must have, ``[N]`` with N its own length (a non-tensor is left to
    :func:`check_labels`, which refuses it)."""
    if not isinstance(labels, torch.Tensor):
        return ()
    if labels.dim() != 1:
        raise ValueError(f"labels must have shape [N], got {tuple(labels.shape)}")
    return tuple(labels.shape)
