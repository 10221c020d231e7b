"""The graph of clusters the parallel solver contracts, round after round.

:meth:`ClusterGraph.contract` merges every cluster into its root the way RAMA's
``dCOO::contract_cuda`` does (Abbas & Swoboda, "RAMA: A Rapid Multicut Algorithm on GPU", CVPR
2022): **map** each cluster to its root's new compact index (a prefix sum over the roots),
**sort** the mapped edges by (low, high) end-point and **reduce** — class-cost rows and parallel
edges summed in item order, self-loops dropped — with the graph's :class:`~gpucops.solver.steps.
Steps`, so the kernels and the torch reference contract alike.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .steps import Steps, index_counts

__all__ = ["ClusterGraph"]


@dataclass(frozen=True)
class ClusterGraph:
    """Clusters of nodes with their class costs and the coalesced edges between them.

    Attributes:
        costs: ``[C, K]`` float64 summed class costs (forbidden labels +inf).
        edges: ``[E, 2]`` int64, low < high, sorted by (low, high), no duplicates.
        weights: ``[E]`` float64 summed edge costs, positive = attractive.
        image: ``[C]`` int64 image of each cluster, non-decreasing (clusters grouped by image).
        num_images: the batch's image count.
        steps: the implementation its steps and contractions run on.
        buffer: which of two kept buffers of ``steps`` holds the arrays (a contraction writes
            into the other, so it never overwrites what it reads).
    """

    costs: torch.Tensor
    edges: torch.Tensor
    weights: torch.Tensor
    image: torch.Tensor
    num_images: int
    steps: Steps
    buffer: int = 0

    @property
    def num_clusters(self) -> int:
        return self.costs.shape[0]

    def local_index(self) -> torch.Tensor:
        """``[C]`` int64 index of each cluster within its image (what the coin hashes, so a
        batch decides as its images alone would)."""
        per_image = index_counts(self.image, self.num_images)
        first = torch.cumsum(per_image, 0) - per_image
        return torch.arange(self.num_clusters, device=self.image.device) - first[self.image]

    def contract(self, root: torch.Tensor) -> tuple[ClusterGraph, torch.Tensor]:
        """Merge every cluster into its ``root [C]`` int64 (a root is its own): roots keep their
        order under compact new indices. Returns the contracted graph and the new index ``[C]``
        int64 of every cluster."""
        is_root = root == torch.arange(self.num_clusters, device=root.device)
        mapping = (torch.cumsum(is_root, 0) - 1)[root]
        num_roots = int(is_root.sum())
        buffer = 1 - self.buffer
        out = f"graph {buffer}"
        costs = self.steps.segment_sum(self.costs, mapping, num_roots, out + ".costs")
        edges, weights = self.steps.coalesce(self.edges, self.weights, mapping, num_roots, out)
        # each root's image, scattered from its members (all of one image) rather than read
        # through the boolean mask, which would wait for the device to size its result
        image = self.image.new_empty(num_roots).scatter_(0, mapping, self.image)
        contracted = ClusterGraph(costs, edges, weights, image, self.num_images, self.steps, buffer)
        return contracted, mapping
