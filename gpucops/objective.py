"""The AMWC objective of any labeling, on graphs and on grids.

objective = Σ_i node_costs[i, class_i] + Σ_{cut e} edge_costs[e], where an edge is cut when its
end-points have different classes, or the same *thing* class and different segments. Nodes of one
stuff class are never cut apart. Sums are accumulated in float64.

The grid form works on the maps directly (shifted comparisons), not through the edge list, so the
two forms are independent implementations that check each other.
"""

from __future__ import annotations

import torch

from ._validate import (
    as_partitionable,
    check_costs,
    check_distances,
    check_edges,
    check_image_index,
    check_labels,
)
from .grid import edge_offsets
from .segment import segment_sum

__all__ = ["cut_edges", "objective", "objective_graph"]


def cut_edges(
    partitionable: torch.Tensor,
    class_u: torch.Tensor,
    class_v: torch.Tensor,
    segment_u: torch.Tensor,
    segment_v: torch.Tensor,
) -> torch.Tensor:
    """Bool mask: is the edge between end-points u and v cut under the AMWC rule?"""
    return (class_u != class_v) | (partitionable[class_u] & (segment_u != segment_v))


def objective_graph(
    node_costs: torch.Tensor,
    edges: torch.Tensor,
    edge_costs: torch.Tensor,
    partitionable: torch.Tensor,
    classes: torch.Tensor,
    clusters: torch.Tensor,
    image_index: torch.Tensor | None = None,
) -> torch.Tensor:
    """AMWC objective per image of a graph labeling.

    Args:
        node_costs: ``[N, K]`` float.
        edges: ``[E, 2]`` int.
        edge_costs: ``[E]`` float, paid when the edge is cut (positive = attractive).
        partitionable: ``[K]`` bool.
        classes: ``[N]`` int class per node, in ``[0, K)``.
        clusters: ``[N]`` int segment/cluster id per node (compared within an image only).
        image_index: ``[N]`` int image of each node, or None for one image.
    Returns:
        ``[num_images]`` float64.
    """
    node_costs = check_costs(node_costs, "node_costs", 2)
    num_nodes, num_classes = node_costs.shape
    device = node_costs.device
    edges = check_edges(edges, num_nodes, device)
    edge_costs = check_costs(edge_costs, "edge_costs", 1, device)
    if edge_costs.shape[0] != edges.shape[0]:
        raise ValueError(
            f"edge_costs must have shape [E] = [{edges.shape[0]}], got {tuple(edge_costs.shape)}"
        )
    partitionable = as_partitionable(partitionable, num_classes, device)
    classes = check_labels(classes, "classes", (num_nodes,), device)
    clusters = check_labels(clusters, "clusters", (num_nodes,), device)
    if num_nodes and bool(((classes < 0) | (classes >= num_classes)).any()):
        raise ValueError(f"classes must lie in [0, {num_classes})")
    image_index, num_images = check_image_index(image_index, num_nodes, edges, device)

    node_term = node_costs.gather(1, classes.view(-1, 1)).view(-1).double()
    u, v = edges[:, 0], edges[:, 1]
    cut = cut_edges(partitionable, classes[u], classes[v], clusters[u], clusters[v])
    edge_term = torch.where(cut, edge_costs.double(), 0.0)
    values = torch.cat([node_term, edge_term])
    owners = torch.cat([image_index, image_index[u]])
    return segment_sum(values, owners, num_images)


def objective(
    node_costs: torch.Tensor,
    edge_costs: torch.Tensor,
    partitionable: torch.Tensor,
    classes: torch.Tensor,
    segments: torch.Tensor,
    distances: tuple[int, ...] = (1, 4, 16, 32, 64),
) -> torch.Tensor:
    """AMWC objective per image of a batch of grid labelings.

    Args:
        node_costs: ``[B, K, H, W]`` float.
        edge_costs: ``[B, 2·|D|, H, W]`` float (channel 2i: vertical edges of distance i, 2i+1:
            horizontal); masked positions are ignored.
        partitionable: ``[K]`` bool.
        classes: ``[B, H, W]`` int.
        segments: ``[B, H, W]`` int.
        distances: D, strictly increasing integers ≥ 1.
    Returns:
        ``[B]`` float64.
    """
    node_costs = check_costs(node_costs, "node_costs", 4)
    batch, num_classes, height, width = node_costs.shape
    device = node_costs.device
    distances = check_distances(distances, height, width)
    edge_costs = check_costs(edge_costs, "edge_costs", 4, node_costs.device)
    expected = (batch, 2 * len(distances), height, width)
    if tuple(edge_costs.shape) != expected:
        raise ValueError(
            f"edge_costs must have shape {list(expected)}, got {tuple(edge_costs.shape)}"
        )
    partitionable = as_partitionable(partitionable, num_classes, device)
    classes = check_labels(classes, "classes", (batch, height, width), device)
    segments = check_labels(segments, "segments", (batch, height, width), device)
    if classes.numel() and bool(((classes < 0) | (classes >= num_classes)).any()):
        raise ValueError(f"classes must lie in [0, {num_classes})")

    total = node_costs.gather(1, classes.unsqueeze(1)).double().sum(dim=(1, 2, 3))
    for i, d in enumerate(distances):
        before, after = edge_offsets(d)
        if d < height:  # vertical edges at rows before ≤ r < H − after
            cut = cut_edges(
                partitionable,
                classes[:, : height - d],
                classes[:, d:],
                segments[:, : height - d],
                segments[:, d:],
            )
            costs = edge_costs[:, 2 * i, before : height - after].double()
            total = total + torch.where(cut, costs, 0.0).sum(dim=(1, 2))
        if d < width:  # horizontal edges at cols before ≤ c < W − after
            cut = cut_edges(
                partitionable,
                classes[..., : width - d],
                classes[..., d:],
                segments[..., : width - d],
                segments[..., d:],
            )
            costs = edge_costs[:, 2 * i + 1, :, before : width - after].double()
            total = total + torch.where(cut, costs, 0.0).sum(dim=(1, 2))
    return total
