"""The parallel solver's loop: the tile pre-pass, then rounds of score → pick → stars → check →
contract until no edge is worth contracting (each step is described in
:mod:`gpucops.solver.steps`; the reasons for the design in ``docs/solver.md``).

Every index that feeds a decision is local to its image, so a batch as one graph gives exactly
the results of its images one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .graph import ClusterGraph
from .options import ParallelOptions
from .steps import top_fraction_scores
from .tiles import Tiles

__all__ = ["ContractionResult", "contract_rounds", "sum_rounds"]


@dataclass
class ContractionResult:
    """Every node's class and cluster before the stuff merge, with the loop's merge counts."""

    classes: torch.Tensor  # [N] int64
    clusters: torch.Tensor  # [N] int64, cluster of each node (any ids in [0, N))
    merges_per_round: list[int] = field(default_factory=list)
    tile_merges: int = 0  # merges of the tile pre-pass


def sum_rounds(per_image: list[list[int]]) -> list[int]:
    """Counts per round of images run one by one, summed round by round (as one graph of all
    of them would count them)."""
    length = max(map(len, per_image), default=0)
    return [sum(r[i] for r in per_image if i < len(r)) for i in range(length)]


def contract_rounds(
    graph: ClusterGraph, tiles: Tiles | None, tile_images: int, options: ParallelOptions
) -> ContractionResult:
    """Contract ``graph`` (one cluster per node) by the parallel method.

    Args:
        graph: the problem's nodes as clusters, grouped by image, with coalesced edges.
        tiles: the tiles of the greedy pre-pass, or None.
        tile_images: how many times ``tiles`` repeat, image after image (the graph's images for
            a grid's tiles; 1 for tiles given per node of the whole graph).
        options: ``top_fraction`` (``tile`` is already in ``tiles``).
    """
    steps = graph.steps
    num_nodes = graph.num_clusters
    node_cluster = torch.arange(num_nodes, device=graph.costs.device)
    if tiles is not None:
        root = steps.tile_roots(graph.costs, graph.edges, graph.weights, tiles, tile_images)
        graph, node_cluster = graph.contract(root)
    tile_merges = num_nodes - graph.num_clusters
    # each round maps the clusters to the next graph's: compose those maps at cluster level (the
    # pre-pass leaves ~1/60 of the nodes) and apply them to the nodes once, after the last round
    # — not an O(N) gather over every pixel each round
    cluster_map = torch.arange(graph.num_clusters, device=graph.costs.device)
    merges_per_round: list[int] = []
    round_index = 0
    while True:
        costs, edges, weights = graph.costs, graph.edges, graph.weights
        minimum, argmin = steps.cluster_classes(costs)
        scores, picks = steps.score_pick(costs, minimum, argmin, edges, weights)
        if not bool((picks >= 0).any()):
            break
        if options.top_fraction is not None:
            edge_image = graph.image[edges[:, 0]]
            scores = top_fraction_scores(scores, edge_image, graph.num_images, options.top_fraction)
            picks = steps.pick(scores, edges, graph.num_clusters)
        root = steps.star_roots(picks, edges, graph.local_index(), round_index)
        root = steps.checked_roots(root, picks, scores, costs, minimum, edges, weights)
        contracted, mapping = graph.contract(root)
        merges_per_round.append(graph.num_clusters - contracted.num_clusters)
        graph, cluster_map = contracted, mapping[cluster_map]
        round_index += 1
    node_cluster = cluster_map[node_cluster]
    # the last graph's classes (no edge left to contract)
    return ContractionResult(argmin[node_cluster], node_cluster, merges_per_round, tile_merges)
