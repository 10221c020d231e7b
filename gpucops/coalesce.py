"""Canonical edge lists: duplicates summed, each pair known by its lowest input edge id."""

from __future__ import annotations

import torch

from .segment import segment_sum

__all__ = ["coalesce_edges"]


def coalesce_edges(
    edges: torch.Tensor, edge_costs: torch.Tensor, num_nodes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sum duplicate edges (in either orientation) deterministically.

    Args:
        edges: ``[E, 2]`` int64 node pairs without self-loops.
        edge_costs: ``[E]`` float.
    Returns:
        ``pairs [E', 2]`` int64 with ``pairs[:, 0] < pairs[:, 1]``, ``costs [E']`` float64 (sums in
        input order) and ``ids [E']`` int64, the lowest input edge id of each pair; ordered by id,
        so an edge list without duplicates keeps its order.
    """
    low = torch.minimum(edges[:, 0], edges[:, 1])
    high = torch.maximum(edges[:, 0], edges[:, 1])
    keys, inverse = torch.unique(low * num_nodes + high, return_inverse=True)
    costs = segment_sum(edge_costs.double(), inverse, keys.numel())
    input_ids = torch.arange(edges.shape[0], device=edges.device)
    ids = torch.full_like(keys, edges.shape[0]).scatter_reduce_(
        0, inverse, input_ids, reduce="amin"
    )
    order = torch.argsort(ids)
    keys, costs, ids = keys[order], costs[order], ids[order]
    pairs = torch.stack([keys // num_nodes, keys % num_nodes], dim=1)
    return pairs, costs, ids
