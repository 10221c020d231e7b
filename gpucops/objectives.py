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
    check_class_labels,
    check_graph_problem,
    check_grid_problem,
    check_labels,
)
from .grid import edge_offsets
from .segment import segment_sum

__all__ = [
    "cut_edges",
    "improvement_ratio",
    "objective",
    "objective_graph",
    "trivial_objective",
]


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
    node_costs, edges, edge_costs, partitionable, image_index, num_images = check_graph_problem(
        node_costs, edges, edge_costs, partitionable, image_index
    )
    num_nodes, num_classes = node_costs.shape
    classes = check_class_labels(classes, "classes", (num_nodes,), num_classes, node_costs.device)
    clusters = check_labels(clusters, "clusters", (num_nodes,), node_costs.device)

    return objective_graph_validated(
        node_costs, edges, edge_costs, partitionable, classes, clusters, image_index, num_images
    )


def objective_graph_validated(
    node_costs: torch.Tensor,
    edges: torch.Tensor,
    edge_costs: torch.Tensor,
    partitionable: torch.Tensor,
    classes: torch.Tensor,
    clusters: torch.Tensor,
    image_index: torch.Tensor,
    num_images: int,
    cut: torch.Tensor | None = None,
) -> torch.Tensor:
    """:func:`objective_graph` of inputs already validated and normalised (int64 labels and
    ``image_index``, bool ``partitionable``, all on one device). ``cut``: ``[E]`` bool, which
    edges the labeling cuts, when the caller knows already (the solver: an edge is cut exactly
    when its end-points' panoptic segments differ); None = by the AMWC rule."""
    node_term = node_costs.gather(1, classes.view(-1, 1)).view(-1).double()
    u, v = edges[:, 0], edges[:, 1]
    if cut is None:
        cut = cut_edges(partitionable, classes[u], classes[v], clusters[u], clusters[v])
    # only the cut edges (a small share) are summed, each image's in edge order
    cut_index = cut.nonzero().flatten()
    # two sums, each over values usually grouped by image already (no sort; see segment_sum)
    return segment_sum(node_term, image_index, num_images) + segment_sum(
        edge_costs[cut_index].double(), image_index[u[cut_index]], num_images
    )


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
    node_costs, edge_costs, partitionable, distances = check_grid_problem(
        node_costs, edge_costs, partitionable, distances
    )
    batch, num_classes, height, width = node_costs.shape
    shape, device = (batch, height, width), node_costs.device
    classes = check_class_labels(classes, "classes", shape, num_classes, device)
    segments = check_labels(segments, "segments", shape, device)

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


def trivial_objective(
    node_costs: torch.Tensor,
    edge_costs: torch.Tensor,
    partitionable: torch.Tensor,
    distances: tuple[int, ...],
) -> torch.Tensor:
    """``[B]`` objective of the trivial labeling — the cheapest class per pixel, every pixel its
    own cluster — the baseline of the quality ratio (trivial − solver) / (trivial − reference)."""
    batch, _, height, width = node_costs.shape
    singletons = torch.arange(height * width, device=node_costs.device)
    singletons = singletons.view(1, height, width).expand(batch, -1, -1)
    return objective(
        node_costs, edge_costs, partitionable, node_costs.argmin(dim=1), singletons, distances
    )


def improvement_ratio(
    trivial: torch.Tensor, objective: torch.Tensor, reference: torch.Tensor
) -> torch.Tensor:
    """Per image, ``(trivial − objective) / (trivial − reference)``: the share of the reference's
    improvement over the trivial labeling that a solver keeps (1 = as good as the reference,
    above 1 = better). The quality figure of every benchmark against the sequential greedy;
    arguments ``[B]`` objectives on one device. Where neither improves on the trivial labeling
    (every edge repulsive, say) the ratio is 1, not 0/0."""
    gain, reference_gain = trivial - objective, trivial - reference
    return torch.where((gain == 0) & (reference_gain == 0), 1.0, gain / reference_gain)
