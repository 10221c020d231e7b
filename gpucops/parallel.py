"""Batched parallel contraction for the AMWC: rounds of score → pick → star merge → contract.

A batch is one block-diagonal graph. Every round, on all images at once:

1. **score** every current edge: ``t = w − p`` with ``p`` the class-conflict term of
   ``docs/solver.md`` (0 where both clusters have the same class);
2. **pick**: each cluster takes its incident edge of largest ``t > 0`` (a packed int64 key: the
   float32 bits of ``t`` high, the inverted edge index low, so ties go to the lowest index and the
   max is independent of reduction order);
3. **stars**: a hash coin of (cluster index within its image, round) makes each cluster a centre
   or a leaf; a leaf whose pick leads to a centre joins it (many leaves may join one centre); two
   clusters outside those stars that picked the same edge merge as a pair; then (free leaves) a
   cluster nobody picked and still alone joins the root it picked. Every star is checked
   exactly — merging S costs ``min_k Σ_S C(k) − Σ_S min C − Σ_{internal e} w`` — and a star whose
   cost is not negative shrinks to its best leaf, so the objective never goes up;
4. **contract**: compact new cluster ids (prefix sum), sum class-cost vectors and parallel edges
   (sorted segment sums), drop self-loops.

Rounds repeat until no edge has ``t > 0``. Before them, optionally (``blocks``; by default in
:func:`gpucops.solve`, on 16×16 pixel tiles), the sequential greedy itself runs inside blocks of
nodes over the edges within them (:mod:`gpucops.blocks`), and the rounds start from the
contracted graph.

Nodes are processed grouped by image and every index that feeds a decision is local to its
image, so a batch of B gives exactly the B single results.
Class costs of clusters are float64; forbidden labels (``label_mask``) are +inf, which min and
argmin skip and sums keep (no large padding constants that would wreck float sums).

The loop is written in torch and runs on the tensors' device. Score/pick and the star proposal
run as the kernels of ``cuda/contraction.cu`` (host build on the CPU, CuPy on CUDA); the torch
functions of this module are their references, equal bit for bit (the pre-pass's reference is
the sequential solver on the edges inside blocks).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from .blocks import NodeBlocks, block_roots, node_blocks
from .contraction_kernels import ContractionKernels, kernels_for
from .segment import is_sorted, segment_sum

__all__ = [
    "ContractionResult",
    "checked_roots",
    "cluster_classes",
    "coin_is_centre",
    "contract_parallel",
    "masked_class_costs",
    "pick_edges",
    "score_edges",
    "star_roots",
    "threshold_scores",
    "top_fraction_scores",
]

_LOW32 = 0xFFFFFFFF


@dataclass
class ContractionResult:
    """Per-node classes and clusters before the stuff merge, with round statistics."""

    classes: torch.Tensor  # [N] int64
    clusters: torch.Tensor  # [N] int64, cluster index of each node (any ids in [0, N))
    merges_per_round: list[int] = field(default_factory=list)
    block_merges: int = 0  # merges of the block pre-pass


def cluster_classes(
    costs: torch.Tensor, kernels: ContractionKernels | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """min and argmin (lowest class on ties; class 0 for an all-+inf row) of each cluster's
    class costs ``[C, K]``; ``kernels``: on the device's kernels (same result)."""
    if kernels is not None:
        return kernels.row_min(costs)
    minimum = costs.min(dim=1).values
    # torch.min's index on ties is not specified: take the lowest class attaining the min
    return minimum, (costs == minimum.unsqueeze(1)).to(torch.int8).argmax(dim=1)


def score_edges(
    costs: torch.Tensor,
    minimum: torch.Tensor,
    argmin: torch.Tensor,
    edges: torch.Tensor,
    weights: torch.Tensor,
) -> torch.Tensor:
    """``t = w − p`` of every edge ``[E]`` (float64).

    ``p = 0`` where both end-points have the same class, else
    ``min_k [(C_u(k) − m_u) + (C_v(k) − m_v)]``.
    """
    u, v = edges[:, 0], edges[:, 1]
    t = weights.clone()
    differ = (argmin[u] != argmin[v]).nonzero().flatten()
    if differ.numel():
        du, dv = u[differ], v[differ]
        margins = (costs[du] - minimum[du, None]) + (costs[dv] - minimum[dv, None])
        t[differ] = weights[differ] - margins.min(dim=1).values
    return t


def _pick_keys(scores: torch.Tensor, edge_ids: torch.Tensor) -> torch.Tensor:
    """Packed int64 keys of edges with t > 0: float32 bits of t (positive floats order as ints)
    high, the inverted edge index low, so the max is the largest t, then the lowest index."""
    bits = scores[edge_ids].float().view(torch.int32).long()
    return (bits << 32) | (_LOW32 - edge_ids)


def pick_edges(scores: torch.Tensor, edges: torch.Tensor, num_clusters: int) -> torch.Tensor:
    """Each cluster's incident edge of largest positive score (lowest edge index on ties).

    Returns ``[C]`` int64 edge indices, −1 where a cluster has no edge with ``t > 0``.
    """
    positive = (scores > 0).nonzero().flatten()
    keys = _pick_keys(scores, positive)
    best = torch.full((num_clusters,), -1, dtype=torch.int64, device=scores.device)
    for end in (0, 1):
        best.scatter_reduce_(0, edges[positive, end], keys, reduce="amax")
    return torch.where(best >= 0, _LOW32 - (best & _LOW32), -1)


def masked_class_costs(
    node_costs: torch.Tensor,
    label_mask: torch.Tensor | None,
    image_index: torch.Tensor,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """Float64 class costs ``[N, K]`` with the labels an image may not use (``label_mask
    [num_images, K]``, True = forbidden) set to +inf: min/argmin skip them and sums keep them
    infinite. ``out``: a row-major float64 ``[N, K]`` buffer to write them into."""
    if out is None:
        # row-major: a grid's node costs arrive as a permuted view, and every kernel reads rows
        costs = node_costs.to(torch.float64, memory_format=torch.contiguous_format)
    else:
        costs = out.copy_(node_costs)
    if label_mask is not None:
        costs.masked_fill_(label_mask[image_index], float("inf"))
    return costs


def threshold_scores(
    scores: torch.Tensor, edge_image: torch.Tensor, num_images: int, threshold: float
) -> torch.Tensor:
    """Scores with every edge below ``threshold`` × the largest score of its image set to 0 (so
    it cannot be picked this round). The best edge of every image always stays."""
    best = torch.full((num_images,), float("-inf"), dtype=scores.dtype, device=scores.device)
    best.scatter_reduce_(0, edge_image, scores, reduce="amax")
    return torch.where(scores >= threshold * best[edge_image], scores, 0.0)


def top_fraction_scores(
    scores: torch.Tensor, edge_image: torch.Tensor, num_images: int, fraction: float
) -> torch.Tensor:
    """Scores with every edge outside the top ``fraction`` of its image's positive scores set to
    0 (so it cannot be picked this round): per image, the m = ⌈fraction · n⌉ highest of its n
    positive scores stay (all edges tied with the m-th too), so the best edge always does. An
    image without positive scores keeps its scores.

    ``edge_image [E]`` must be grouped (non-decreasing), as coalesced edges are. One image on the
    CPU (the solver's case there) takes a ``kthvalue``; otherwise two stable sorts (by score,
    then by image) find every image's cut at once, with no loop over images and no host sync.
    """
    if scores.numel() == 0:
        return scores
    positive = scores > 0
    if num_images == 1 and scores.device.type == "cpu":
        values = scores[positive]
        if values.numel() == 0:
            return scores
        # the m-th largest is the (n − m + 1)-th smallest
        keep = max(1, math.ceil(fraction * values.numel()))
        cut = values.kthvalue(values.numel() - keep + 1).values.view(1)
    else:
        counts = torch.zeros(num_images, dtype=torch.int64, device=scores.device)
        counts.index_add_(0, edge_image, positive.long())
        keep = torch.ceil(fraction * counts.double()).long().clamp(min=1)  # as Python's ceil
        # each image's scores together, largest first (non-positive ones last): its m-th is the cut
        ranked = torch.where(positive, scores, float("-inf"))
        order = torch.argsort(ranked, descending=True, stable=True)
        order = order[torch.argsort(edge_image[order], stable=True)]
        edges = torch.bincount(edge_image, minlength=num_images)
        position = (torch.cumsum(edges, 0) - edges + keep - 1).clamp(0, scores.numel() - 1)
        cut = torch.where(counts > 0, ranked[order][position], float("-inf"))
    return torch.where(scores >= cut[edge_image], scores, 0.0)


def coin_is_centre(local_index: torch.Tensor, round_index: int) -> torch.Tensor:
    """Hash coin of (cluster index within its image, round): True = centre, False = leaf.

    Integer mixing below 2^62, so the same bits come out on every device and in the kernels.
    """
    modulus = 1 << 31
    x = (local_index * 1103515245 + (round_index * 2654435 + 12345)) % modulus
    x = x ^ (x >> 13)
    x = (x * 1664525 + 1013904223) % modulus
    x = x ^ (x >> 16)
    return ((x >> 7) & 1) == 1


def star_roots(
    picks: torch.Tensor,
    edges: torch.Tensor,
    scores: torch.Tensor,
    centre: torch.Tensor,
    epsilon: float | None = None,
    free_leaves: bool = False,
) -> torch.Tensor:
    """Proposed root of every cluster: leaves join the centre they picked; other mutual picks pair.

    Args:
        picks: ``[C]`` picked edge per cluster or −1.
        centre: ``[C]`` bool coin.
        epsilon: optional goodness gate: a leaf joins only if its edge's ``t`` is at least
            ``(1 − ε)`` times the centre's own best ``t``.
        free_leaves: then every cluster that no cluster picked and that is still alone joins
            the cluster it picked, if that one is a root (gate permitting): about half the
            clusters merge per round instead of about a third.
    Returns:
        ``[C]`` int64 root (a cluster's own index when it stays).
    """
    num_clusters = picks.shape[0]
    ids = torch.arange(num_clusters, device=picks.device)
    has_pick = picks >= 0
    safe = picks.clamp(min=0)
    target = torch.where(
        has_pick, torch.where(edges[safe, 0] == ids, edges[safe, 1], edges[safe, 0]), -1
    )
    safe_target = target.clamp(min=0)
    passes = has_pick
    if epsilon is not None:
        target_best = scores[picks[safe_target].clamp(min=0)]
        passes = passes & (scores[safe] >= (1.0 - epsilon) * target_best)
    joins = passes & ~centre & centre[safe_target]
    root = torch.where(joins, target, ids)
    # centres receiving a leaf are roots of their star; everyone else may pair by a mutual pick
    involved = joins.clone()
    involved[target[joins]] = True
    mutual = has_pick & (picks[safe_target] == picks) & ~involved & ~involved[safe_target]
    root = torch.where(mutual, torch.minimum(ids, target), root)
    if free_leaves:
        picked = torch.zeros(num_clusters, dtype=torch.bool, device=picks.device)
        picked[target[has_pick]] = True
        free = passes & ~picked & (root == ids) & (root[safe_target] == safe_target)
        root = torch.where(free, target, root)
    return root


def checked_roots(
    root: torch.Tensor,
    picks: torch.Tensor,
    scores: torch.Tensor,
    costs: torch.Tensor,
    minimum: torch.Tensor,
    edges: torch.Tensor,
    weights: torch.Tensor,
    kernels: ContractionKernels | None = None,
) -> torch.Tensor:
    """Accept each proposed star whose merge cost is negative; shrink the others to the leaf
    with the best edge. ``kernels`` sums on the device's kernels (same result, bit for bit)."""
    num_clusters = root.shape[0]
    ids = torch.arange(num_clusters, device=root.device)
    members = root != ids
    if not bool(members.any()):
        return root
    if kernels is not None:
        member_cost = kernels.star_costs(root, costs, minimum, edges, weights)[root[members]]
    else:
        # only stars of two or more clusters need checking: sum over their clusters alone
        in_star = members.clone()
        in_star[root[members]] = True
        star = in_star.nonzero().flatten()
        roots, group = torch.unique(root[star], return_inverse=True)
        group_of_root = torch.full((num_clusters,), -1, dtype=torch.int64, device=root.device)
        group_of_root[roots] = torch.arange(roots.numel(), device=root.device)
        internal = (root[edges[:, 0]] == root[edges[:, 1]]).nonzero().flatten()
        merge_cost = (
            segment_sum(costs[star], group, roots.numel()).min(dim=1).values
            - segment_sum(minimum[star], group, roots.numel())
            - segment_sum(weights[internal], group_of_root[root[edges[internal, 0]]], roots.numel())
        )
        member_cost = merge_cost[group_of_root[root[members]]]
    rejected = members.clone()
    rejected[members] = ~(member_cost < 0)
    if not bool(rejected.any()):
        return root
    # best leaf of each rejected star: its pick (the edge to the root) has the largest key
    leaf = rejected.nonzero().flatten()
    keys = _pick_keys(scores, picks[leaf])
    best = torch.full((num_clusters,), -1, dtype=torch.int64, device=root.device)
    best.scatter_reduce_(0, root[leaf], keys, reduce="amax")
    keep = best[root[leaf]] == keys
    checked = root.clone()
    checked[leaf[~keep]] = leaf[~keep]
    return checked


def contract_parallel(
    node_costs: torch.Tensor,
    edges: torch.Tensor,
    edge_costs: torch.Tensor,
    image_index: torch.Tensor,
    num_images: int,
    label_mask: torch.Tensor | None = None,
    epsilon: float | None = None,
    use_kernels: bool = True,
    split_images: bool | None = None,
    threshold: float | None = None,
    free_leaves: bool = True,
    coalesced: bool = False,
    top_fraction: float | None = None,
    blocks: NodeBlocks | torch.Tensor | None = None,
) -> ContractionResult:
    """Parallel contraction of validated inputs, before the stuff merge.

    Args:
        node_costs: ``[N, K]`` float.
        edges: ``[E, 2]`` int64, no self-loops, within one image; duplicates are summed.
        edge_costs: ``[E]`` float, positive = attractive.
        image_index: ``[N]`` int64.
        label_mask: ``[num_images, K]`` bool (True = forbidden) or None.
        epsilon: optional goodness gate of the star merge (see :func:`star_roots`).
        use_kernels: run score/pick and the star proposal as the kernels of ``cuda/`` (host build
            on the CPU, CuPy on CUDA devices); False runs the torch steps of this module, which
            give the same result bit for bit.
        split_images: run the images one after another instead of as one graph (same result);
            None = on the CPU only, where it keeps the working set in cache.
        threshold: α in [0, 1): each round, only edges with t ≥ α × the largest t of their
            image may be picked, so merges follow the greedy order in bands (closer to the
            sequential reference, more rounds); None = every edge with t > 0.
        free_leaves: clusters that nobody picked join the root they picked (see
            :func:`star_roots`): 2.5–3× fewer rounds, a little lower quality; False =
            the coin's stars and mutual pairs only.
        top_fraction: in (0, 1]: each round, only the top ``top_fraction`` of each image's
            positive scores may be picked (:func:`top_fraction_scores`): merges follow the
            greedy order in bands of equal size, for quality at the cost of rounds; None = all.
        coalesced: the caller guarantees the edges are as the contraction keeps them — low <
            high, sorted by (low, high), no duplicates, nodes grouped by image (grids listed
            with ``grid_to_graph(..., sort_edges=True)``) — so the first coalescing (a sort of
            all edges) is skipped.
        blocks: run the sequential greedy inside blocks of nodes first, over the edges within
            a block (:mod:`gpucops.blocks`): ``[N]`` int64 block of every node, or
            :class:`~gpucops.blocks.NodeBlocks` listing them for ``coalesced`` edges, image by
            image (the tiles of a grid, cached). None = rounds from the single nodes.
    Returns:
        :class:`ContractionResult` on the inputs' device.
    """
    device = node_costs.device
    num_nodes = node_costs.shape[0]
    # group nodes by image (stable), so cluster indices are contiguous per image
    if is_sorted(image_index):  # grids and most graphs: no reordering
        position, node_image = None, image_index
    else:
        order = torch.argsort(image_index, stable=True)
        position = torch.empty_like(order)
        position[order] = torch.arange(num_nodes, device=device)
        node_image, node_costs = image_index[order], node_costs[order]
    kernels = kernels_for(device) if use_kernels else None
    if kernels is None:
        costs = masked_class_costs(node_costs, label_mask, node_image)
        edge_costs = edge_costs.double()
    else:
        # the float64 copies of the inputs go into the kernels' kept buffers (fresh pages for
        # hundreds of MB cost more than the copies themselves at full resolution)
        buffer = kernels.kept("input costs", tuple(node_costs.shape))
        costs = masked_class_costs(node_costs, label_mask, node_image, buffer)
        edge_costs = kernels.kept("input weights", tuple(edge_costs.shape)).copy_(edge_costs)
    if coalesced and position is None:
        weights = edge_costs
    else:
        if isinstance(blocks, NodeBlocks):
            raise ValueError("NodeBlocks need coalesced edges and nodes grouped by image")
        mapping = torch.arange(num_nodes, device=device) if position is None else position
        edges, weights = _coalesce_edges(kernels, edges, edge_costs, mapping, num_nodes)
    if isinstance(blocks, torch.Tensor) and position is not None:
        blocks = blocks[order]

    band = _band(threshold, top_fraction)
    if split_images is None:
        split_images = device.type == "cpu"
    if split_images and num_images > 1:
        # On the CPU, one image at a time keeps the working set in cache (measured: a batch of
        # eight 256×512 images 1.70 s per image as one graph, 1.26 s one by one); the decisions
        # are the same, since every index that feeds one is local to its image.
        node_counts = torch.bincount(node_image, minlength=num_images).tolist()
        edge_counts = torch.bincount(node_image[edges[:, 0]], minlength=num_images).tolist()
        clusters, classes, rounds = [], [], []
        node_start = cluster_start = block_merges = 0
        for nodes_b, costs_b, edges_b, weights_b in zip(
            node_counts,
            costs.split(node_counts),
            edges.split(edge_counts),
            weights.split(edge_counts),
            strict=True,
        ):
            blocks_b = (
                blocks[node_start : node_start + nodes_b]
                if isinstance(blocks, torch.Tensor)
                else blocks
            )
            cluster_b, class_b, merges_b, block_b = _contract_rounds(
                costs_b, edges_b - node_start, weights_b,
                torch.zeros(nodes_b, dtype=torch.int64), 1, kernels, epsilon, band, free_leaves,
                blocks_b,
            )  # fmt: skip
            # cluster ids compact across images, as one graph numbers them
            clusters.append(cluster_b + cluster_start)
            classes.append(class_b)
            rounds.append(merges_b)
            block_merges += block_b
            node_start += nodes_b
            cluster_start += int(cluster_b.max()) + 1 if nodes_b else 0
        node_cluster, node_class = torch.cat(clusters), torch.cat(classes)
        length = max(map(len, rounds), default=0)
        merges_per_round = [sum(r[i] for r in rounds if i < len(r)) for i in range(length)]
    else:
        node_cluster, node_class, merges_per_round, block_merges = _contract_rounds(
            costs, edges, weights, node_image, num_images, kernels, epsilon, band, free_leaves,
            blocks,
        )  # fmt: skip
    if position is not None:
        node_class, node_cluster = node_class[position], node_cluster[position]
    return ContractionResult(
        classes=node_class,
        clusters=node_cluster,
        merges_per_round=merges_per_round,
        block_merges=block_merges,
    )


def _contract_rounds(
    costs: torch.Tensor,
    edges: torch.Tensor,
    weights: torch.Tensor,
    cluster_image: torch.Tensor,
    num_images: int,
    kernels: ContractionKernels | None,
    epsilon: float | None,
    band: Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None,
    free_leaves: bool,
    blocks: NodeBlocks | torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, list[int], int]:
    """The block pre-pass (if ``blocks``) and the rounds, on nodes grouped by image and coalesced
    edges. ``band(scores, edge_image, num_images)`` zeroes the scores that may not be picked this
    round (None: all may).

    Returns the cluster ``[N]`` and class ``[N]`` of every node (in the grouped order), the
    merges of each round and those of the pre-pass.
    """
    device = costs.device
    num_nodes = costs.shape[0]
    node_cluster = torch.arange(num_nodes, device=device)
    if blocks is not None:
        costs, edges, weights, cluster_image, node_cluster = _block_prepass(
            costs, edges, weights, cluster_image, num_images, blocks, kernels
        )
    block_merges = num_nodes - costs.shape[0]
    merges_per_round = []
    round_index = 0
    while True:
        num_clusters = costs.shape[0]
        minimum, argmin = cluster_classes(costs, kernels)
        if kernels is not None:
            scores, picks = kernels.score_pick(costs, minimum, argmin, edges, weights)
        else:
            scores = score_edges(costs, minimum, argmin, edges, weights)
            picks = pick_edges(scores, edges, num_clusters)
        if not bool((picks >= 0).any()):
            break
        if band is not None:
            scores = band(scores, cluster_image[edges[:, 0]], num_images)
            picks = (
                kernels.pick(scores, edges, num_clusters)
                if kernels is not None
                else pick_edges(scores, edges, num_clusters)
            )
        per_image = torch.bincount(cluster_image, minlength=num_images)
        first = torch.cumsum(per_image, 0) - per_image
        local = torch.arange(num_clusters, device=device) - first[cluster_image]
        if kernels is not None:
            root = kernels.star_roots(
                picks, edges, scores, local, round_index, epsilon, free_leaves
            )
        else:
            centre = coin_is_centre(local, round_index)
            root = star_roots(picks, edges, scores, centre, epsilon, free_leaves)
        root = checked_roots(root, picks, scores, costs, minimum, edges, weights, kernels)
        # the kernels write each round's result into one of two kept buffers, in turn
        costs, edges, weights, cluster_image, mapping = _contract_to_roots(
            kernels, costs, edges, weights, cluster_image, root, f"round {round_index % 2}"
        )
        merges_per_round.append(num_clusters - costs.shape[0])
        node_cluster = mapping[node_cluster]
        round_index += 1
    _, argmin = cluster_classes(costs, kernels)
    return node_cluster, argmin[node_cluster], merges_per_round, block_merges


def _block_prepass(
    costs: torch.Tensor,
    edges: torch.Tensor,
    weights: torch.Tensor,
    cluster_image: torch.Tensor,
    num_images: int,
    blocks: NodeBlocks | torch.Tensor,
    kernels: ContractionKernels | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The sequential greedy inside blocks, then one contraction. Returns the contracted costs,
    edges, weights and cluster images, and the cluster ``[N]`` of every node."""
    block_images = num_images
    if isinstance(blocks, torch.Tensor):  # all images as one image of blocks, ids made compact
        block_of = torch.unique(blocks.cpu(), return_inverse=True)[1]
        blocks, block_images = node_blocks(block_of, edges.cpu()), 1
    root = block_roots(costs, edges, weights, blocks.to(costs.device), block_images, kernels)
    return _contract_to_roots(kernels, costs, edges, weights, cluster_image, root, "blocks")


def _contract_to_roots(
    kernels: ContractionKernels | None,
    costs: torch.Tensor,
    edges: torch.Tensor,
    weights: torch.Tensor,
    cluster_image: torch.Tensor,
    root: torch.Tensor,
    out: str,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Merge every cluster into its ``root [C]`` (a root is its own): roots keep their order
    under compact new indices. Returns the contracted costs, edges, weights and cluster images,
    and the new index ``[C]`` of every cluster; ``out`` names the kernels' kept buffers."""
    is_root = root == torch.arange(root.shape[0], device=root.device)
    mapping = (torch.cumsum(is_root, 0) - 1)[root]
    costs, edges, weights = _contract(
        kernels, costs, edges, weights, mapping, int(is_root.sum()), out
    )
    return costs, edges, weights, cluster_image[is_root], mapping


def _band(
    threshold: float | None, top_fraction: float | None
) -> Callable[[torch.Tensor, torch.Tensor, int], torch.Tensor] | None:
    """The round's score filter of the options α and top fraction (both: one after the other)."""
    if threshold is None and top_fraction is None:
        return None

    def band(scores: torch.Tensor, edge_image: torch.Tensor, num_images: int) -> torch.Tensor:
        if threshold is not None:
            scores = threshold_scores(scores, edge_image, num_images, threshold)
        if top_fraction is not None:
            scores = top_fraction_scores(scores, edge_image, num_images, top_fraction)
        return scores

    return band


def _contract(
    kernels: ContractionKernels | None,
    costs: torch.Tensor,
    edges: torch.Tensor,
    weights: torch.Tensor,
    mapping: torch.Tensor,
    num_clusters: int,
    out: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Cluster class costs ``[num_clusters, K]`` and coalesced edges after mapping every
    cluster to ``mapping``'s new index (sums in item order, deterministic). ``out`` names the
    kernels' kept output buffers (None: new tensors)."""
    if kernels is not None:
        summed = kernels.segment_sum(costs, mapping, num_clusters, out and out + ".costs")
    else:
        summed = segment_sum(costs, mapping, num_clusters)
    return summed, *_coalesce_edges(kernels, edges, weights, mapping, num_clusters, out)


def _coalesce_edges(
    kernels: ContractionKernels | None,
    edges: torch.Tensor,
    weights: torch.Tensor,
    mapping: torch.Tensor,
    num_clusters: int,
    out: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Edges mapped by ``mapping`` and coalesced, on the kernels or in torch (same result)."""
    if kernels is not None:
        return kernels.coalesce(edges, weights, mapping, num_clusters, out)
    return _coalesce(mapping[edges], weights, num_clusters)


def _coalesce(
    edges: torch.Tensor, weights: torch.Tensor, num_clusters: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop self-loops, orient (low, high), sort by pair and sum parallel edges (float64).

    One stable sort of the packed pair keys serves both the unique pairs and the segment sums,
    which add parallel edges in their current order (deterministic).
    """
    keep = edges[:, 0] != edges[:, 1]
    edges, weights = edges[keep], weights[keep]
    low = torch.minimum(edges[:, 0], edges[:, 1])
    high = torch.maximum(edges[:, 0], edges[:, 1])
    keys, order = torch.sort(low * num_clusters + high, stable=True)
    keys, counts = torch.unique_consecutive(keys, return_counts=True)
    if keys.numel() == 0:
        return edges.new_zeros((0, 2)), weights.new_zeros(0)
    summed = torch.segment_reduce(weights[order], "sum", lengths=counts, unsafe=True)
    return torch.stack([keys // num_clusters, keys % num_clusters], dim=1), summed
