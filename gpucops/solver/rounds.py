"""The parallel solver's loop: the tile pre-pass, then rounds of score → pick → stars → check →
contract until no edge is worth contracting, each image finished by the exact greedy once it has
at most ``tail`` clusters (each step is described in :mod:`gpucops.solver.steps`; the reasons
for the design in ``docs/solver.md``).

Every index that feeds a decision is local to its image, so a batch as one graph gives exactly
the results of its images one by one.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from .backend import steps_for
from .graph import ClusterGraph
from .options import ParallelOptions
from .steps import Steps, index_counts, top_fraction_scores
from .tiles import Tiles, node_tiles

__all__ = ["ContractionResult", "contract_rounds", "sum_rounds"]


@dataclass
class ContractionResult:
    """Every node's class and cluster before the stuff merge, with the loop's merge counts."""

    classes: torch.Tensor  # [N] int64
    clusters: torch.Tensor  # [N] int64, cluster of each node (any ids in [0, N))
    merges_per_round: list[int] = field(default_factory=list)
    tile_merges: int = 0  # merges of the tile pre-pass
    tail_merges: int = 0  # merges of the exact greedy that finished the images (counted in a round)


def sum_rounds(per_image: list[list[int]]) -> list[int]:
    """Counts per round of images run one by one, summed round by round (as one graph of all
    of them would count them)."""
    length = max(map(len, per_image), default=0)
    return [sum(r[i] for r in per_image if i < len(r)) for i in range(length)]


def _tail_roots(graph: ClusterGraph, finishing: torch.Tensor) -> torch.Tensor:
    """``[C]`` roots of the exact sequential greedy over the whole of each ``finishing [B]``
    image (one tile per image; the other images' clusters stay alone), lowest cluster id as
    root — the pre-pass kernel with an image as its tile.

    Off the CPU the graph goes to the host build and the roots come back: the kernel runs a
    tile on one thread, and an image's tail (up to ``tail`` clusters, thousands of edges) is one
    long dependent chain, milliseconds on a CPU core but far more at a GPU thread's memory
    latency; the copies are one transfer per array each way (the host build equals the kernel
    bit for bit)."""
    arrays = (graph.costs, graph.edges, graph.weights, graph.image, finishing)
    device = graph.costs.device
    if not _tail_on_host(device):
        return _exact_roots(graph.steps, *arrays, graph.num_images)
    host = [array.cpu() for array in arrays]
    return _exact_roots(steps_for(torch.device("cpu")), *host, graph.num_images).to(device)


def _tail_on_host(device: torch.device) -> bool:
    """Whether the tail of a graph on ``device`` is solved by the host build (off the CPU)."""
    return device.type != "cpu"


def _exact_roots(
    steps: Steps, costs: torch.Tensor, edges: torch.Tensor, weights: torch.Tensor,
    image: torch.Tensor, finishing: torch.Tensor, num_images: int,
) -> torch.Tensor:  # fmt: skip
    """The exact greedy of :func:`_tail_roots` with ``steps``, on the arrays' device."""
    single = num_images + torch.arange(costs.shape[0], device=image.device)
    tile_of = torch.where(finishing[image], image, single)
    return steps.tile_roots(costs, edges, weights, node_tiles(tile_of, edges), 1)


def contract_rounds(
    graph: ClusterGraph, tiles: Tiles | None, tile_images: int, options: ParallelOptions
) -> ContractionResult:
    """Contract ``graph`` (one cluster per node) by the parallel method.

    Args:
        graph: the problem's nodes as clusters, grouped by image, with coalesced edges.
        tiles: the tiles of the greedy pre-pass, or None.
        tile_images: how many times ``tiles`` repeat, image after image (the graph's images for
            a grid's tiles; 1 for tiles given per node of the whole graph).
        options: ``top_fraction`` and ``tail`` (``tile`` is already in ``tiles``).
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
    device = graph.costs.device
    # images the exact greedy has finished (no edge of theirs is worth contracting any more),
    # and its merges, counted on the device and read once at the end
    finished = torch.zeros(graph.num_images, dtype=torch.bool, device=device)
    tail_merges = torch.zeros((), dtype=torch.int64, device=device)
    while True:
        costs, edges, weights = graph.costs, graph.edges, graph.weights
        minimum, argmin = steps.cluster_classes(costs)
        scores, picks = steps.score_pick(costs, minimum, argmin, edges, weights)
        # an image small enough is finished by the exact greedy instead of more, nearly empty
        # rounds; per image, so a batch decides as its images alone would
        done = None
        if options.tail:
            # a finished image is left alone: the rounds' sums, in another order than the
            # greedy's, can lift an edge it left at t ≤ 0 a rounding above zero
            done = finished[graph.image]
            picks = torch.where(done, -1, picks)
            counts = index_counts(graph.image, graph.num_images)
            finishing = (counts <= options.tail) & ~finished
            # one read of the device for the three questions of the pass
            more, finish_some, finish_all = torch.stack(
                [(picks >= 0).any(), finishing.any(), (finishing | finished).all()]
            ).tolist()  # fmt: skip
        else:
            more, finish_some, finish_all = bool((picks >= 0).any()), False, False
        if not more:
            break
        root = None
        if not finish_all:  # some image goes on with a round
            if options.top_fraction is not None:
                edge_image = graph.image[edges[:, 0]]
                scores = top_fraction_scores(
                    scores, edge_image, graph.num_images, options.top_fraction
                )
                picks = steps.pick(scores, edges, graph.num_clusters)
                if done is not None:
                    picks = torch.where(done, -1, picks)
            root = steps.star_roots(picks, edges, graph.local_index(), round_index)
            root = steps.checked_roots(root, picks, scores, costs, minimum, edges, weights)
        if finish_some:
            exact = _tail_roots(graph, finishing)
            in_tail = finishing[graph.image]
            root = exact if root is None else torch.where(in_tail, exact, root)
            identity = torch.arange(graph.num_clusters, device=device)
            tail_merges += (in_tail & (exact != identity)).sum()
            finished |= finishing
        contracted, mapping = graph.contract(root)
        merges_per_round.append(graph.num_clusters - contracted.num_clusters)
        graph, cluster_map = contracted, mapping[cluster_map]
        round_index += 1
    node_cluster = cluster_map[node_cluster]
    # the last graph's classes (no edge left to contract)
    return ContractionResult(
        argmin[node_cluster], node_cluster, merges_per_round, tile_merges, int(tail_merges)
    )
