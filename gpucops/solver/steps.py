"""The steps of the parallel contraction, in torch: the reference every kernel is tested against.

:class:`Steps` is the interface the round loop (:mod:`gpucops.solver.rounds`) calls, with the
logic both implementations share (the star check's shrink, each cluster's index in its image);
:class:`TorchSteps` implements every step in torch, :class:`gpucops.solver.backend.KernelSteps`
with the kernels of ``cuda/contraction.cu`` under the same method names, equal bit for bit.

The steps, on a graph of clusters (class costs ``[C, K]`` float64, coalesced edges ``[E, 2]`` and
weights ``[E]`` float64, see :class:`gpucops.solver.graph.ClusterGraph`):

1. **score** every edge: ``t = w − p`` with ``p`` the class-conflict term of ``docs/solver.md``
   (0 where both clusters have the same class);
2. **pick**: each cluster takes its incident edge of largest ``t > 0`` (a packed int64 key: the
   float32 bits of ``t`` high, the inverted edge index low, so ties go to the lowest index and
   the max is independent of reduction order);
3. **stars**: a hash coin of (cluster index within its image, round) makes each cluster a centre
   or a leaf; a leaf whose pick leads to a centre joins it; two clusters outside those stars that
   picked the same edge pair up; then (free leaves) a cluster nobody picked and still alone joins
   the root it picked;
4. **check**: merging a star S costs ``min_k Σ_S C(k) − Σ_S min C − Σ_{internal e} w``; a star
   whose cost is not negative shrinks to its best leaf, so the objective never goes up;
5. **contract**: sum class-cost rows and parallel edges into the roots (:meth:`segment_sum`,
   :meth:`coalesce`: sums in item order, deterministic).

Class costs are float64; forbidden labels (``label_mask``) are +inf, which min and argmin skip and
sums keep (no large padding constants that would wreck float sums).
"""

from __future__ import annotations

import math

import torch

from ..segment import segment_sum
from .sequential import contract_sequential
from .tiles import Tiles

__all__ = [
    "LOW32",
    "Steps",
    "TorchSteps",
    "coin_is_centre",
    "index_counts",
    "pick_keys",
    "top_fraction_cuts",
    "top_fraction_scores",
    "unpack_picks",
]

LOW32 = 0xFFFFFFFF  # the low half of a packed key: an inverted edge index, or a slot's item


def pick_keys(scores: torch.Tensor, edge_ids: torch.Tensor) -> torch.Tensor:
    """Packed int64 keys of edges with t > 0: float32 bits of t (positive floats order as ints)
    high, the inverted edge index low, so the max is the largest t, then the lowest index."""
    bits = scores[edge_ids].float().view(torch.int32).long()
    return (bits << 32) | (LOW32 - edge_ids)


def unpack_picks(best: torch.Tensor) -> torch.Tensor:
    """Each cluster's largest pick key ``[C]`` int64 (≤ 0: none, as keys of t > 0 are positive)
    → its picked edge ``[C]`` int64, −1 where it has none."""
    return torch.where(best > 0, LOW32 - (best & LOW32), -1)


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


def index_counts(index: torch.Tensor, size: int) -> torch.Tensor:
    """``[size]`` int64: how often each value in ``[0, size)`` occurs in ``index``. ``bincount``
    without its host sync (on CUDA it reads the input's minimum and maximum back to size its
    output); integer additions, so the same counts in any order."""
    counts = torch.zeros(size, dtype=torch.int64, device=index.device)
    return counts.index_add_(0, index, torch.ones_like(index, dtype=torch.int64))


def top_fraction_cuts(
    scores: torch.Tensor, edge_image: torch.Tensor, num_images: int, fraction: float
) -> torch.Tensor:
    """``[num_images]`` float64: each image's cut of the top ``fraction`` of its positive scores
    — the m-th highest of its n positive scores, m = ⌈fraction · n⌉ (at least 1) — or −inf for an
    image without positive scores (it keeps its scores).

    ``edge_image [E]`` must be grouped (non-decreasing), as coalesced edges are. One image on the
    CPU (the solver's case there) takes a ``kthvalue``; otherwise two stable sorts (by score,
    then by image) find every image's cut at once, with no loop over images and no host sync.
    """
    no_cut = torch.full((num_images,), float("-inf"), dtype=torch.float64, device=scores.device)
    if scores.numel() == 0:
        return no_cut
    positive = scores > 0
    if num_images == 1 and scores.device.type == "cpu":
        values = scores[positive]
        if values.numel() == 0:
            return no_cut
        # the m-th largest is the (n − m + 1)-th smallest
        keep = max(1, math.ceil(fraction * values.numel()))
        return values.kthvalue(values.numel() - keep + 1).values.view(1)
    counts = torch.zeros(num_images, dtype=torch.int64, device=scores.device)
    counts.index_add_(0, edge_image, positive.long())
    keep = torch.ceil(fraction * counts.double()).long().clamp(min=1)  # as Python's ceil
    # each image's scores together, largest first (non-positive ones last): its m-th is the cut
    ranked = torch.where(positive, scores, float("-inf"))
    order = torch.argsort(ranked, descending=True, stable=True)
    order = order[torch.argsort(edge_image[order], stable=True)]
    edges = index_counts(edge_image, num_images)
    position = (torch.cumsum(edges, 0) - edges + keep - 1).clamp(0, scores.numel() - 1)
    return torch.where(counts > 0, ranked[order][position], no_cut)


def top_fraction_scores(
    scores: torch.Tensor, edge_image: torch.Tensor, num_images: int, fraction: float
) -> torch.Tensor:
    """Scores with every edge outside the top ``fraction`` of its image's positive scores set to
    0 (so it cannot be picked this round): per image, the m = ⌈fraction · n⌉ highest of its n
    positive scores stay (all edges tied with the m-th too), so the best edge always does
    (:func:`top_fraction_cuts`). An image without positive scores keeps its scores."""
    cut = top_fraction_cuts(scores, edge_image, num_images, fraction)
    return torch.where(scores >= cut[edge_image], scores, 0.0)


class Steps:
    """The steps the round loop calls; subclasses implement them on one device.

    Every tensor argument is on the implementation's device: ``costs [C, K]`` float64,
    ``minimum [C]`` float64 and ``argmin [C]`` int64 (:meth:`cluster_classes`), ``edges [E, 2]``
    int64 coalesced, ``weights [E]`` float64 (positive = attractive), ``scores [E]`` float64,
    ``picks [C]`` int64 edge or −1, ``root [C]`` int64 (a cluster's own index when it stays).
    ``out`` names a buffer an implementation may keep between solves (ignored in torch). What a
    step returns may live in such a kept buffer (the kernels' scores, picks' scratch and cut
    mask), valid until the same step runs again: use it before, or copy it.
    """

    def input_costs(
        self, node_costs: torch.Tensor, label_mask: torch.Tensor | None, image: torch.Tensor
    ) -> torch.Tensor:
        """Float64 row-major class costs ``[N, K]`` of ``node_costs [N, K]``, with the labels an
        image may not use (``label_mask [num_images, K]``, True = forbidden) set to +inf; never
        the caller's tensor."""
        raise NotImplementedError

    def input_weights(self, edge_costs: torch.Tensor) -> torch.Tensor:
        """``edge_costs [E]`` as float64 (never written to: the caller's own tensor may be
        returned)."""
        raise NotImplementedError

    def cluster_classes(self, costs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """min and argmin of each cluster's class costs (lowest class on ties; class 0 for an
        all-+inf row)."""
        raise NotImplementedError

    def score_pick(
        self,
        costs: torch.Tensor,
        minimum: torch.Tensor,
        argmin: torch.Tensor,
        edges: torch.Tensor,
        weights: torch.Tensor,
        pick: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """``t = w − p`` of every edge, each cluster's pick from those scores (None unless
        ``pick``: a band picks later), and ``[1]`` on the device, nonzero where some score is
        positive — where some cluster has a pick (read with the pass's other questions)."""
        raise NotImplementedError

    def begin_pass(self, num_clusters: int) -> None:
        """A pass of the round loop begins on a graph of (at most) ``num_clusters``: what the
        steps handed out before the last pass is dead (an implementation may reuse its scratch;
        the last pass's contraction made the graph this one works on)."""

    def top_fraction_pick(
        self,
        scores: torch.Tensor,
        edges: torch.Tensor,
        image: torch.Tensor,
        num_images: int,
        fraction: float,
    ) -> torch.Tensor:
        """Each cluster's pick among the edges in the top ``fraction`` of its image's positive
        scores (:func:`top_fraction_scores`; ``image [C]`` grouped): its incident edge of largest
        score in that band (lowest index on ties), −1 where it has none."""
        raise NotImplementedError

    def star_roots(
        self,
        picks: torch.Tensor,
        edges: torch.Tensor,
        local_index: torch.Tensor | None,
        round_index: int,
    ) -> torch.Tensor:
        """Proposed roots: the coin's stars (:func:`coin_is_centre` of ``local_index [C]``, the
        cluster's index within its image; None: the cluster's index, one image), mutual pairs,
        then free leaves (module docstring)."""
        raise NotImplementedError

    def star_costs(
        self,
        root: torch.Tensor,
        costs: torch.Tensor,
        minimum: torch.Tensor,
        edges: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        """``[C]`` float64 merge cost of the star rooted at each cluster (0 where none), each sum
        in cluster or edge order. ``edges`` coalesced — sorted by (low, high): the kernels find a
        star's internal edges in its members' runs of edges as the low end-point."""
        raise NotImplementedError

    def contraction_map(
        self, root: torch.Tensor, image: torch.Tensor, num_images: int
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The map of a contraction into ``root [C]`` (a root is its own), roots keeping their
        order under compact new indices: ``mapping [C]`` int64 new index of every cluster, the
        count of roots ``[1]`` int64, the roots of each image ``[num_images]`` int64, and
        ``root_image [C]`` int64, each root's image at its new index (the rows past the roots
        undefined). On the device throughout: no host sync."""
        is_root = root == torch.arange(root.shape[0], device=root.device)
        ordinal = torch.cumsum(is_root, 0)
        mapping = (ordinal - 1)[root]
        per_image = torch.zeros(num_images, dtype=torch.int64, device=root.device)
        per_image.index_add_(0, image, is_root.long())
        # each root's image, scattered from its members (all of one image) rather than read
        # through the boolean mask, which would wait for the device to size its result
        root_image = image.new_zeros(root.shape[0]).scatter_(0, mapping, image)
        return mapping, ordinal[-1:], per_image, root_image

    def segment_sum(
        self, rows: torch.Tensor, segment_ids: torch.Tensor, num_segments: int, out: str = ""
    ) -> torch.Tensor:
        """``[num_segments, K]`` float64 sums of ``rows [M, K]`` by ``segment_ids [M]``, each in
        item order."""
        raise NotImplementedError

    def contracted_costs(
        self,
        costs: torch.Tensor,
        root: torch.Tensor,
        mapping: torch.Tensor,
        roots: torch.Tensor,
        num_clusters: int,
        out: str = "",
    ) -> torch.Tensor:
        """The class costs ``[num_clusters, K]`` of a contraction into ``root [C]``: each new
        cluster (``mapping [C]``, ``roots [1]`` of them on the device) sums its members' rows in
        index order, the rows past the roots zero — :meth:`segment_sum`, which an implementation
        may take from the star check that produced ``root``."""
        return self.segment_sum(costs, mapping, num_clusters, out)

    def coalesce(
        self,
        edges: torch.Tensor,
        weights: torch.Tensor,
        mapping: torch.Tensor,
        num_clusters: int,
        out: str = "",
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Edges mapped to clusters by ``mapping [N]``, without self-loops, oriented (low, high),
        sorted by pair, parallel edges summed in edge order (float64)."""
        raise NotImplementedError

    def coalesce_padded(
        self,
        edges: torch.Tensor,
        weights: torch.Tensor,
        mapping: torch.Tensor,
        num_clusters: int,
        out: str = "",
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`coalesce` into ``[E, 2]`` and ``[E]`` outputs, the capacity (the input's edge
        count), with the count of edges it holds as ``[1]`` int64 on the device: the rows after
        that are inert — edge (0, 0), weight −inf, which scores −inf and bids for no pick. The
        host need not read the count before the next steps (one read a round sizes them all)."""
        merged, merged_weights = self.coalesce(edges, weights, mapping, num_clusters, out)
        count, padding = merged.shape[0], edges.shape[0] - merged.shape[0]
        return (
            torch.cat([merged, merged.new_zeros(padding, 2)]),
            torch.cat([merged_weights, merged_weights.new_full((padding,), float("-inf"))]),
            torch.tensor([count], device=merged.device),
        )

    def tile_roots(
        self,
        costs: torch.Tensor,
        edges: torch.Tensor,
        weights: torch.Tensor,
        tiles: Tiles,
        num_images: int,
    ) -> torch.Tensor:
        """The pre-pass: the sequential greedy inside every tile of every image, over the edges
        inside the tile. ``edges``/``weights``: the batch's edge lists image by image, in the
        order ``tiles`` indexes, distinct pairs (coalesced, as every caller's are: the warp
        kernel marks a neighbour with its one edge). Returns ``[N]`` int64, the lowest node id of
        each node's cluster."""
        raise NotImplementedError

    def edge_cut(self, edges: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[E]`` bool: the end-points of an edge carry different ``labels [N]``."""
        raise NotImplementedError

    def checked_roots(
        self,
        root: torch.Tensor,
        picks: torch.Tensor,
        scores: torch.Tensor,
        costs: torch.Tensor,
        minimum: torch.Tensor,
        edges: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        """The check: accept each proposed star whose merge cost (:meth:`star_costs`) is negative;
        shrink the others to the leaf with the best edge."""
        num_clusters = root.shape[0]
        if scores.numel() == 0:  # no edges, no stars
            return root
        own = torch.arange(num_clusters, device=root.device)
        # all clusters at once, with no host sync (a GPU would stop for an any() or a nonzero):
        # a member is rejected when its star's merge cost is not negative
        members = root != own
        rejected = members & ~(self.star_costs(root, costs, minimum, edges, weights)[root] < 0)
        # best leaf of each rejected star: its pick (the edge to the root) has the largest key
        keys = torch.where(rejected, pick_keys(scores, picks.clamp(min=0)), -1)
        best = torch.full((num_clusters,), -1, dtype=torch.int64, device=root.device)
        best.scatter_reduce_(0, root, keys, reduce="amax")
        return torch.where(rejected & (best[root] != keys), own, root)


class TorchSteps(Steps):
    """Every step in torch, on the tensors' device (the reference; also the CUDA path where CuPy
    is missing). Signatures and types as in :class:`Steps`."""

    def input_costs(self, node_costs, label_mask, image):
        # row-major: a grid's node costs arrive as a permuted view, and every step reads rows
        costs = node_costs.to(torch.float64, memory_format=torch.contiguous_format)
        if label_mask is None:
            return costs if costs is not node_costs else costs.clone()
        return costs.masked_fill(label_mask[image], float("inf"))

    def input_weights(self, edge_costs):
        return edge_costs.double()

    def cluster_classes(self, costs):
        minimum = costs.min(dim=1).values
        # torch.min's index on ties is not specified: take the lowest class attaining the min
        return minimum, (costs == minimum.unsqueeze(1)).to(torch.int8).argmax(dim=1)

    def score_pick(self, costs, minimum, argmin, edges, weights, pick=True):
        u, v = edges[:, 0], edges[:, 1]
        scores = weights.clone()
        differ = (argmin[u] != argmin[v]).nonzero().flatten()
        if differ.numel():
            du, dv = u[differ], v[differ]
            margins = (costs[du] - minimum[du, None]) + (costs[dv] - minimum[dv, None])
            scores[differ] = weights[differ] - margins.min(dim=1).values
        picks = self.pick(scores, edges, costs.shape[0]) if pick else None
        return scores, picks, (scores > 0).any().view(1)

    def top_fraction_pick(self, scores, edges, image, num_images, fraction):
        edge_image = image[edges[:, 0]]
        banded = top_fraction_scores(scores, edge_image, num_images, fraction)
        return self.pick(banded, edges, image.shape[0])

    def pick(self, scores: torch.Tensor, edges: torch.Tensor, num_clusters: int) -> torch.Tensor:
        """Each cluster's incident edge of largest positive score (lowest index on ties), −1
        where it has none."""
        positive = (scores > 0).nonzero().flatten()
        keys = pick_keys(scores, positive)
        best = torch.full((num_clusters,), -1, dtype=torch.int64, device=scores.device)
        for end in (0, 1):
            best.scatter_reduce_(0, edges[positive, end], keys, reduce="amax")
        return unpack_picks(best)

    def star_roots(self, picks, edges, local_index, round_index):
        num_clusters = picks.shape[0]
        ids = torch.arange(num_clusters, device=picks.device)
        centre = coin_is_centre(ids if local_index is None else local_index, round_index)
        has_pick = picks >= 0
        safe = picks.clamp(min=0)
        target = torch.where(
            has_pick, torch.where(edges[safe, 0] == ids, edges[safe, 1], edges[safe, 0]), -1
        )
        safe_target = target.clamp(min=0)
        joins = has_pick & ~centre & centre[safe_target]
        root = torch.where(joins, target, ids)
        # centres receiving a leaf are roots of their star; everyone else may pair by a mutual pick
        involved = joins.clone()
        involved[target[joins]] = True
        mutual = has_pick & (picks[safe_target] == picks) & ~involved & ~involved[safe_target]
        root = torch.where(mutual, torch.minimum(ids, target), root)
        # free leaves: nobody picked them, so nobody joins them, and their target stays a root
        picked = torch.zeros(num_clusters, dtype=torch.bool, device=picks.device)
        picked[target[has_pick]] = True
        free = has_pick & ~picked & (root == ids) & (root[safe_target] == safe_target)
        return torch.where(free, target, root)

    def star_costs(self, root, costs, minimum, edges, weights):
        num_clusters = root.shape[0]
        members = root != torch.arange(num_clusters, device=root.device)
        # only stars of two or more clusters need a cost: sum over their clusters alone
        in_star = members.clone()
        in_star[root[members]] = True
        star = in_star.nonzero().flatten()
        roots, group = torch.unique(root[star], return_inverse=True)
        group_of_root = torch.full((num_clusters,), -1, dtype=torch.int64, device=root.device)
        group_of_root[roots] = torch.arange(roots.numel(), device=root.device)
        internal = (root[edges[:, 0]] == root[edges[:, 1]]).nonzero().flatten()
        merge_cost = torch.zeros(num_clusters, dtype=torch.float64, device=root.device)
        merge_cost[roots] = (
            segment_sum(costs[star], group, roots.numel()).min(dim=1).values
            - segment_sum(minimum[star], group, roots.numel())
            - segment_sum(weights[internal], group_of_root[root[edges[internal, 0]]], roots.numel())
        )
        return merge_cost

    def segment_sum(self, rows, segment_ids, num_segments, out=""):
        return segment_sum(rows, segment_ids, num_segments)

    def coalesce(self, edges, weights, mapping, num_clusters, out=""):
        edges = mapping[edges]
        keep = edges[:, 0] != edges[:, 1]
        edges, weights = edges[keep], weights[keep]
        low = torch.minimum(edges[:, 0], edges[:, 1])
        high = torch.maximum(edges[:, 0], edges[:, 1])
        # one stable sort of the packed pair keys serves both the unique pairs and the sums,
        # which add parallel edges in their current order (deterministic)
        keys, order = torch.sort(low * num_clusters + high, stable=True)
        keys, counts = torch.unique_consecutive(keys, return_counts=True)
        if keys.numel() == 0:
            return edges.new_zeros((0, 2)), weights.new_zeros(0)
        summed = torch.segment_reduce(weights[order], "sum", lengths=counts, unsafe=True)
        return torch.stack([keys // num_clusters, keys % num_clusters], dim=1), summed

    def tile_roots(self, costs, edges, weights, tiles, num_images):
        # the reference: the sequential solver itself on the edges inside tiles
        device = costs.device
        offsets = torch.arange(num_images, device=device) * tiles.edges_per_image
        inside = (tiles.tile_edges.unsqueeze(0) + offsets.unsqueeze(1)).flatten()
        image = torch.arange(num_images, device=device).repeat_interleave(tiles.nodes_per_image)
        _, clusters, _ = contract_sequential(costs, edges[inside], weights[inside], image)
        clusters = clusters.to(device)
        nodes = torch.arange(costs.shape[0], device=device)
        lowest = torch.full_like(nodes, costs.shape[0]).scatter_reduce_(
            0, clusters, nodes, reduce="amin"
        )
        return lowest[clusters]

    def edge_cut(self, edges, labels):
        return labels[edges[:, 0]] != labels[edges[:, 1]]
