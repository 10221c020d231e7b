"""The graph of clusters the parallel solver contracts, round after round.

:meth:`ClusterGraph.contract` merges every cluster into its root the way RAMA's
``dCOO::contract_cuda`` does (Abbas & Swoboda, "RAMA: A Rapid Multicut Algorithm on GPU", CVPR
2022): **map** each cluster to its root's new compact index (a prefix sum over the roots),
**sort** the mapped edges by (low, high) end-point and **reduce** — class-cost rows and parallel
edges summed in item order, self-loops dropped — with the graph's :class:`~gpucops.solver.steps.
Steps`, so the kernels and the torch reference contract alike.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from .steps import Steps, index_counts

__all__ = ["ClusterGraph"]


@dataclass(frozen=True)
class ClusterGraph:
    """Clusters of nodes with their class costs and the coalesced edges between them.

    A contraction's output is sized by capacity (the graph it came from) and carries its real
    sizes on the device (``sizes``), so no step of a round waits for the device to learn them;
    the round loop reads them once a round, with its other questions, and keeps the leading rows
    (:meth:`settled`). Until then the rows after the real ones are inert: zero class costs, no
    edges of their own, and edges (0, 0) of weight −inf, which score −inf and pick nothing; their
    images are undefined (nothing reads them before the sizes are known).

    Attributes:
        costs: ``[C, K]`` float64 summed class costs (forbidden labels +inf).
        edges: ``[E, 2]`` int64, low < high, sorted by (low, high), no duplicates.
        weights: ``[E]`` float64 summed edge costs, positive = attractive.
        image: ``[C]`` int64 image of each cluster, non-decreasing (clusters grouped by image).
        num_images: the batch's image count.
        steps: the implementation its steps and contractions run on.
        buffer: which of two kept buffers of ``steps`` holds the arrays (a contraction writes
            into the other, so it never overwrites what it reads).
        sizes: the clusters and the edges the arrays hold, two ``[1]`` int64 tensors on the
            device, when they are sized by capacity (a contraction's output); None when the
            arrays are exact.
        per_image: ``[num_images]`` int64 clusters of each image (a contraction counts them), or
            None to count them from ``image``.
    """

    costs: torch.Tensor
    edges: torch.Tensor
    weights: torch.Tensor
    image: torch.Tensor
    num_images: int
    steps: Steps
    buffer: int = 0
    sizes: tuple[torch.Tensor, torch.Tensor] | None = None
    per_image: torch.Tensor | None = None

    @property
    def num_clusters(self) -> int:
        """The clusters (the capacity while :attr:`sizes` is pending)."""
        return self.costs.shape[0]

    def clusters_per_image(self) -> torch.Tensor:
        """``[num_images]`` int64: the clusters of each image."""
        if self.per_image is not None:
            return self.per_image
        return index_counts(self.image, self.num_images)

    def edges_per_image(self) -> torch.Tensor:
        """``[num_images]`` int64: the live edges of each image, those of finite weight (the
        inert rows of a graph sized by capacity and a finished image's edges weigh −inf; an
        input's are finite). Sized by capacity or exact alike."""
        live = (self.weights > float("-inf")).to(torch.int64)
        counts = torch.zeros(self.num_images, dtype=torch.int64, device=live.device)
        return counts.index_add_(0, self.image[self.edges[:, 0]], live)

    def settled(self, num_clusters: int, num_edges: int) -> ClusterGraph:
        """The graph with exact arrays: the first ``num_clusters`` clusters and ``num_edges``
        edges (the :attr:`sizes` the host has read)."""
        return replace(
            self,
            costs=self.costs[:num_clusters],
            edges=self.edges[:num_edges],
            weights=self.weights[:num_edges],
            image=self.image[:num_clusters],
            sizes=None,
        )

    def local_index(self) -> torch.Tensor | None:
        """``[C]`` int64 index of each cluster within its image (what the coin hashes, so a
        batch decides as its images alone would), or None for one image: the cluster's own
        index. Exact arrays only."""
        if self.num_images == 1:
            return None
        per_image = self.clusters_per_image()
        first = torch.cumsum(per_image, 0) - per_image
        return torch.arange(self.num_clusters, device=self.image.device) - first[self.image]

    def contract(
        self, root: torch.Tensor, exact: bool = False
    ) -> tuple[ClusterGraph, torch.Tensor]:
        """Merge every cluster of this exact graph into its ``root [C]`` int64 (a root is its
        own): roots keep their order under compact new indices. Returns the contracted graph and
        the new index ``[C]`` int64 of every cluster.

        The contracted graph is sized by capacity, with its :attr:`sizes` on the device: no host
        sync, as a round needs. ``exact``: two reads (the roots, the edges) size it exactly —
        for a contraction that leaves few clusters, like the pre-pass's, where the capacity's
        rows would cost more than the reads."""
        capacity = self.num_clusters
        if capacity == 0:
            return self, root.clone()
        mapping, roots, per_image, root_image = self.steps.contraction_map(
            root, self.image, self.num_images
        )
        clusters = int(roots) if exact else capacity
        buffer = 1 - self.buffer
        out = f"graph {buffer}"
        # rows past the roots sum no member: zero class costs
        costs = self.steps.contracted_costs(
            self.costs, root, mapping, roots, clusters, out + ".costs"
        )
        if exact:
            edges, weights = self.steps.coalesce(self.edges, self.weights, mapping, clusters, out)
            sizes, image = None, root_image[:clusters]
        else:
            edges, weights, num_edges = self.steps.coalesce_padded(
                self.edges, self.weights, mapping, clusters, out
            )
            sizes, image = (roots, num_edges), root_image
        contracted = replace(
            self, costs=costs, edges=edges, weights=weights, image=image, buffer=buffer,
            sizes=sizes, per_image=per_image,
        )  # fmt: skip
        return contracted, mapping
