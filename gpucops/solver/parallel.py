"""The parallel method's front: validated inputs → the graph the round loop contracts → every
node's class and cluster (before the stuff merge).

Nodes are grouped by image (stably, so cluster indices are contiguous per image), the class costs
become float64 with forbidden labels +inf, the edges are coalesced unless the caller lists them
so already, and on the CPU the images are contracted one by one (the same decisions, since every
index that feeds one is local to its image; the working set stays in cache).
"""

from __future__ import annotations

import torch

from ..segment import is_sorted
from .graph import ClusterGraph
from .options import ParallelOptions
from .rounds import ContractionResult, contract_rounds, sum_rounds
from .steps import Steps
from .tiles import Tiles, node_tiles

__all__ = ["ContractionResult", "contract_parallel"]


def contract_parallel(
    node_costs: torch.Tensor,
    edges: torch.Tensor,
    edge_costs: torch.Tensor,
    image_index: torch.Tensor,
    num_images: int,
    label_mask: torch.Tensor | None,
    tiles: Tiles | torch.Tensor | None,
    options: ParallelOptions,
    steps: Steps,
    *,
    coalesced: bool = False,
    split_images: bool | None = None,
) -> ContractionResult:
    """Parallel contraction of validated inputs on ``steps``' device.

    Args:
        node_costs: ``[N, K]`` float; ``edges [E, 2]`` int64 (no self-loops, within one image,
            duplicates summed); ``edge_costs [E]`` float, positive = attractive;
            ``image_index [N]`` int64; ``label_mask [num_images, K]`` bool (True = forbidden).
        tiles: the tile pre-pass's tiles: :class:`Tiles` of one image (a grid's, repeated over
            the images; needs ``coalesced``), ``[N]`` int64 tile of every node, or None.
        options: the method's options (``top_fraction``).
        coalesced: the caller guarantees the edges are as the contraction keeps them — low <
            high, sorted by (low, high), no duplicates — so the first coalescing is skipped
            (grids listed with ``grid_to_graph(..., sort_edges=True)``).
        split_images: contract the images one after another instead of as one graph (same
            result); None = on the CPU only.
    """
    num_nodes = node_costs.shape[0]
    # group nodes by image (stable), so cluster indices are contiguous per image
    if is_sorted(image_index):  # grids and most graphs: no reordering
        position, node_image = None, image_index
    else:
        order = torch.argsort(image_index, stable=True)
        position = torch.empty_like(order)
        position[order] = torch.arange(num_nodes, device=order.device)
        node_image, node_costs = image_index[order], node_costs[order]
        if isinstance(tiles, torch.Tensor):
            tiles = tiles[order]
    costs = steps.input_costs(node_costs, label_mask, node_image)
    weights = steps.input_weights(edge_costs)
    if not coalesced or position is not None:
        if isinstance(tiles, Tiles):
            raise ValueError("Tiles need coalesced edges and nodes grouped by image")
        mapping = torch.arange(num_nodes, device=edges.device) if position is None else position
        edges, weights = steps.coalesce(edges, weights, mapping, num_nodes)

    if split_images is None:
        split_images = costs.device.type == "cpu"
    if not split_images or num_images <= 1:
        graph = ClusterGraph(costs, edges, weights, node_image, num_images, steps)
        result = _contract(graph, tiles, options)
    else:
        node_counts = torch.bincount(node_image, minlength=num_images).tolist()
        edge_counts = torch.bincount(node_image[edges[:, 0]], minlength=num_images).tolist()
        results, node_start, cluster_start = [], 0, 0
        for nodes_b, costs_b, edges_b, weights_b in zip(
            node_counts,
            costs.split(node_counts),
            edges.split(edge_counts),
            weights.split(edge_counts),
            strict=True,
        ):
            image_b = torch.zeros(nodes_b, dtype=torch.int64, device=costs.device)
            graph = ClusterGraph(costs_b, edges_b - node_start, weights_b, image_b, 1, steps)
            per_node = isinstance(tiles, torch.Tensor)
            tiles_b = tiles[node_start : node_start + nodes_b] if per_node else tiles
            result_b = _contract(graph, tiles_b, options)
            clusters_b = result_b.clusters
            # cluster ids compact across images, as one graph numbers them
            result_b.clusters = clusters_b + cluster_start
            results.append(result_b)
            node_start += nodes_b
            cluster_start += int(clusters_b.max()) + 1 if nodes_b else 0
        result = ContractionResult(
            torch.cat([r.classes for r in results]),
            torch.cat([r.clusters for r in results]),
            sum_rounds([r.merges_per_round for r in results]),
            sum(r.tile_merges for r in results),
            sum(r.tail_merges for r in results),
        )
    if position is not None:
        result.classes, result.clusters = result.classes[position], result.clusters[position]
    return result


def _contract(
    graph: ClusterGraph, tiles: Tiles | torch.Tensor | None, options: ParallelOptions
) -> ContractionResult:
    """The round loop on ``graph``, with ``tiles`` given per node made into lists first (all the
    graph's images as one image of tiles)."""
    if isinstance(tiles, torch.Tensor):
        return contract_rounds(graph, node_tiles(tiles, graph.edges), 1, options)
    return contract_rounds(graph, tiles, graph.num_images, options)
