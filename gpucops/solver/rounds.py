"""The parallel solver's loop: the tile pre-pass, then rounds of score → pick → stars → check →
contract until no edge is worth contracting, each image finished by the exact greedy once it has
at most ``tail`` clusters (each step is described in :mod:`gpucops.solver.steps`; the reasons
for the design in ``docs/solver.md``).

Every index that feeds a decision is local to its image, so a batch as one graph gives exactly
the results of its images one by one.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import torch

from .backend import steps_for
from .graph import ClusterGraph
from .options import ParallelOptions
from .steps import Steps
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
    latency; the arrays go over in one transfer, the roots back in another (the host build
    equals the kernel bit for bit)."""
    arrays = (graph.costs, graph.edges, graph.weights, graph.image, finishing)
    device = graph.costs.device
    if not _tail_on_host(device):
        return _exact_roots(graph.steps, *arrays, graph.num_images)
    host = _to_host(arrays)
    return _exact_roots(steps_for(torch.device("cpu")), *host, graph.num_images).to(device)


def _to_host(arrays: tuple[torch.Tensor, ...]) -> list[torch.Tensor]:
    """``arrays`` copied to the CPU in one transfer (one wait for the device, not one each): their
    bytes packed end to end, then viewed back. Each array but the last must take a multiple of
    8 bytes, so every view starts aligned."""
    packed = torch.cat([array.contiguous().view(-1).view(torch.uint8) for array in arrays]).cpu()
    views, offset = [], 0
    for array in arrays:
        size = array.numel() * array.element_size()
        views.append(packed[offset : offset + size].view(array.dtype).view(array.shape))
        offset += size
    return views


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


def _tail_tests(graph: ClusterGraph, options: ParallelOptions) -> list[tuple[int, torch.Tensor]]:
    """The tail's tests, each a limit and every image's ``[num_images]`` count on the device: its
    clusters (``tail``), then its edges (``tail_edges``, if set); none without a tail. An image
    passing any of them is finished by the exact greedy."""
    if not options.tail:
        return []
    tests = [(options.tail, graph.clusters_per_image())]
    if options.tail_edges:
        tests.append((options.tail_edges, graph.edges_per_image()))
    return tests


def _small_images(tests: list[tuple[int, torch.Tensor]], counts: list[int]) -> list[bool]:
    """Which images pass a test, from the ``counts`` of the ``tests`` read back in their order."""
    if not tests:
        return []
    num_images = len(counts) // len(tests)
    return [
        any(counts[k * num_images + i] <= limit for k, (limit, _) in enumerate(tests))
        for i in range(num_images)
    ]


def _small_on_device(tests: list[tuple[int, torch.Tensor]]) -> torch.Tensor:
    """``[num_images]`` bool: :func:`_small_images` on the device, from the same counts."""
    small = None
    for limit, count in tests:
        small = count <= limit if small is None else small | (count <= limit)
    return small


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
    device = graph.costs.device
    node_cluster = torch.arange(num_nodes, device=device)
    if tiles is not None:
        root = steps.tile_roots(graph.costs, graph.edges, graph.weights, tiles, tile_images)
        # two reads, outside the rounds: the pre-pass leaves ~1/60 of the nodes, and the sums
        # and the first round would pay for every row of a graph still sized by its N nodes
        graph, node_cluster = graph.contract(root, exact=True)
    tile_merges = num_nodes - graph.num_clusters
    # each round maps the clusters to the next graph's: compose those maps at cluster level (the
    # pre-pass leaves ~1/60 of the nodes) and apply them to the nodes once, after the last round
    # — not an O(N) gather over every pixel each round
    cluster_map: torch.Tensor | None = None
    merges_per_round: list[int] = []
    contracted_from = graph.num_clusters  # clusters before the last round's contraction
    round_index = 0
    # images the exact greedy has finished (on the host: each pass reads which images are small
    # enough; on the device for the finishing pass's masks), and its merges, counted on the
    # device and read with the last pass's questions
    finished = [False] * graph.num_images
    finished_on_device = torch.zeros(graph.num_images, dtype=torch.bool, device=device)
    tail_merges = torch.zeros(1, dtype=torch.int64, device=device)
    while True:
        # a contraction's graph is still sized by capacity here (its inert rows pick nothing):
        # the classes and picks run on it, and one read of the device answers the pass's
        # questions and sizes the rest — the only host sync of a round
        costs, edges, weights = graph.costs, graph.edges, graph.weights
        steps.begin_pass(graph.num_clusters)
        minimum, argmin = steps.cluster_classes(costs)
        # with a band, the picks come after it
        scores, picks, any_pick = steps.score_pick(
            costs, minimum, argmin, edges, weights, pick=options.top_fraction is None
        )
        # an image small enough is finished by the exact greedy instead of more, nearly empty
        # rounds; per image, so a batch decides as its images alone would
        tests = _tail_tests(graph, options)
        questions = [tail_merges, *(graph.sizes or ()), any_pick, *(c for _, c in tests)]
        tail_total, *answers = torch.cat(questions).tolist()
        if graph.sizes is not None:
            (clusters, num_edges), answers = answers[:2], answers[2:]
            merges_per_round.append(contracted_from - clusters)
            graph = graph.settled(clusters, num_edges)
            minimum, argmin = minimum[:clusters], argmin[:clusters]
            picks = None if picks is None else picks[:clusters]
            scores = scores[:num_edges]
            costs, edges, weights = graph.costs, graph.edges, graph.weights
        more, small_images = bool(answers[0]), _small_images(tests, answers[1:])
        if not more:
            break
        # an image, once small, stays small (clusters and edges only shrink)
        finish_some = any(s and not f for s, f in zip(small_images, finished, strict=False))
        root = None
        if not (small_images and all(small_images)):  # some image goes on with a round
            if options.top_fraction is not None:
                # the band leaves the scores of the edges it keeps as they are, so the check's
                # pick keys read the same scores
                picks = steps.top_fraction_pick(
                    scores, edges, graph.image, graph.num_images, options.top_fraction
                )
            root = steps.star_roots(picks, edges, graph.local_index(), round_index)
            root = steps.checked_roots(root, picks, scores, costs, minimum, edges, weights)
        if finish_some:
            # the counts the pass read (the settled graph's are the same)
            finishing = _small_on_device(tests) & ~finished_on_device
            exact = _tail_roots(graph, finishing)
            in_tail = finishing[graph.image]
            root = exact if root is None else torch.where(in_tail, exact, root)
            identity = torch.arange(graph.num_clusters, device=device)
            tail_merges += (in_tail & (exact != identity)).sum()
            finished_on_device |= finishing
            finished = small_images
            # a finished image's edges become inert (−inf: no score, no pick), so no later round
            # touches it — the rounds' sums, in another order than the greedy's, could lift an
            # edge it left at t ≤ 0 a rounding above zero
            graph = replace(graph, weights=torch.where(in_tail[edges[:, 0]], -math.inf, weights))
        contracted_from = graph.num_clusters
        graph, mapping = graph.contract(root)
        cluster_map = mapping if cluster_map is None else mapping[cluster_map]
        round_index += 1
    if cluster_map is not None:
        node_cluster = cluster_map[node_cluster]
    # the last graph's classes (no edge left to contract)
    return ContractionResult(
        argmin[node_cluster], node_cluster, merges_per_round, tile_merges, tail_total
    )
