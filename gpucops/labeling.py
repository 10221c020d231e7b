"""Labeling types returned by the solvers, and the cluster → panoptic segment step.

After contraction every node has a class and a cluster. The panoptic segments follow from them:
all nodes of one *stuff* class (``partitionable[k]`` False) in one image form one segment, whether
or not their clusters touch (the stuff merge of Algorithm 2, lines 19–23), and every cluster of a
*thing* class is its own segment. Segment ids are compact per image, numbered in the order of each
segment's first node (row-major first pixel on grids), so they do not depend on the solver's
internal cluster ids.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "GraphLabeling",
    "MulticutLabeling",
    "PanopticLabeling",
    "compact_segments",
    "segment_keys",
]


@dataclass(frozen=True)
class PanopticLabeling:
    """Result of :func:`gpucops.solve` on a batch of grids.

    Attributes:
        classes: ``[B, H, W]`` int64, class of each pixel.
        segments: ``[B, H, W]`` int64, segment id of each pixel, compact per image from 0; one id
            per present stuff class, one per thing cluster.
        objective: ``[B]`` float64, AMWC objective of the labeling (lower is better).
        info: solver statistics (method, merges, rounds, seconds, ...).
    """

    classes: torch.Tensor
    segments: torch.Tensor
    objective: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class GraphLabeling:
    """Result of :func:`gpucops.solve_graph`.

    Attributes:
        classes: ``[N]`` int64, class of each node.
        segments: ``[N]`` int64, panoptic segment id of each node, compact per image from 0 (as
            :attr:`PanopticLabeling.segments`).
        objective: ``[num_images]`` float64, AMWC objective per image.
        info: solver statistics.
    """

    classes: torch.Tensor
    segments: torch.Tensor
    objective: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class MulticutLabeling:
    """Result of :func:`gpucops.multicut`.

    Attributes:
        labels: ``[N]`` int64, cluster of each node, compact per graph from 0, numbered in the
            order of each cluster's first node.
        energy: ``[num_images]`` float64, multicut energy per graph: the sum of the costs of the
            cut edges (positive cost = attractive, lower = better).
        info: solver statistics (method, merges, rounds, seconds, ...).
    """

    labels: torch.Tensor
    energy: torch.Tensor
    info: dict[str, Any] = field(default_factory=dict)


def segment_keys(
    classes: torch.Tensor,
    clusters: torch.Tensor,
    partitionable: torch.Tensor,
    image_index: torch.Tensor,
    num_images: int,
) -> tuple[torch.Tensor, int]:
    """A key per node naming its panoptic segment — the cluster for a thing class, ``N +
    image·K + class`` for a stuff class (the stuff merge) — and the number of keys."""
    num_nodes, num_classes = classes.shape[0], partitionable.shape[0]
    stuff_key = num_nodes + image_index * num_classes + classes
    keys = torch.where(partitionable[classes], clusters, stuff_key)
    return keys, num_nodes + num_images * num_classes


def compact_segments(
    classes: torch.Tensor,
    clusters: torch.Tensor,
    partitionable: torch.Tensor,
    image_index: torch.Tensor,
    num_images: int,
) -> torch.Tensor:
    """Panoptic segment ids from per-node classes and clusters.

    Args:
        classes: ``[N]`` int64 class per node.
        clusters: ``[N]`` int64 cluster per node, any ids in ``[0, N)``, nodes of one cluster in one
            image with one class.
        partitionable: ``[K]`` bool, True for thing classes.
        image_index: ``[N]`` int64 image of each node.
    Returns:
        ``[N]`` int64 segment ids, compact per image, ordered by each segment's first node.
    """
    num_nodes = classes.shape[0]
    if num_nodes == 0:
        return classes.clone()
    key, _ = segment_keys(classes, clusters, partitionable, image_index, num_images)
    unique_keys, inverse = torch.unique(key, return_inverse=True)
    node_ids = torch.arange(num_nodes, device=classes.device)
    first_node = torch.full_like(unique_keys, num_nodes).scatter_reduce_(
        0, inverse, node_ids, reduce="amin"
    )
    key_image = image_index[first_node]
    order = torch.argsort(key_image * num_nodes + first_node)
    per_image = torch.bincount(key_image, minlength=num_images)
    image_start = torch.cumsum(per_image, 0) - per_image
    local_id = torch.empty_like(order)
    local_id[order] = (
        torch.arange(order.numel(), device=order.device) - image_start[key_image[order]]
    )
    return local_id[inverse]
