"""Argument checks shared by the solver front, the objectives and the grid layout.

Every check raises ``ValueError`` naming the offending argument, so bad input never reaches a
kernel (where it would crash or, worse, give a silently wrong answer).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import NamedTuple

import torch

__all__ = [
    "GraphProblem",
    "GridProblem",
    "as_partitionable",
    "check_class_labels",
    "check_costs",
    "check_distances",
    "check_edges",
    "check_graph_problem",
    "check_grid_problem",
    "check_image_index",
    "check_label_mask",
    "check_labels",
    "check_tiles",
    "require_same_device",
]

_FLOAT_TYPES = (torch.float32, torch.float64)
_HALF_TYPES = (torch.float16, torch.bfloat16)
_INDEX_TYPES = (torch.int32, torch.int64)


def _require_tensor(value: object, name: str) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(value).__name__}")
    return value


def _check_device(tensor: torch.Tensor, name: str, device: torch.device | None) -> None:
    if device is not None and tensor.device != device:
        raise ValueError(
            f"{name} is on {tensor.device} but node_costs is on {device}; "
            "all inputs must be on one device"
        )


def require_same_device(tensor: object, name: str, device: torch.device) -> None:
    """A tensor argument (others are left to their own checks) must be on ``device``, the device of
    the costs it goes with."""
    if isinstance(tensor, torch.Tensor) and tensor.device != device:
        raise ValueError(
            f"{name} is on {tensor.device} but the costs are on {device}; "
            "all inputs must be on one device"
        )


def check_costs(
    costs: object, name: str, ndim: int, device: torch.device | None = None
) -> torch.Tensor:
    """Return ``costs`` as float32/float64 after checking its rank, device and that every value is
    finite.

    Half types (float16, bfloat16) are converted to float32; integer or complex tensors are errors.
    """
    costs = _require_tensor(costs, name)
    _check_device(costs, name, device)
    if costs.dim() != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {tuple(costs.shape)}")
    if costs.dtype in _HALF_TYPES:
        costs = costs.float()
    elif costs.dtype not in _FLOAT_TYPES:
        raise ValueError(
            f"{name} must be a floating tensor (float32 or float64), got {costs.dtype}"
        )
    # a finite sum proves every entry finite in one vectorised pass without a mask (NaN and ±inf
    # propagate: 6 ms instead of 210 ms for a 19×1024×2048 map); only a non-finite sum — a bad
    # entry, or finite entries whose sum overflows — needs the entry-wise check. The solvers add
    # costs in float64: float32 entries cannot overflow that, float64 ones can, so for them the
    # sum of absolute values, which bounds every partial sum, must be finite too.
    if costs.numel() == 0:
        return costs
    wide = costs.dtype == torch.float64
    total = torch.linalg.vector_norm(costs, 1) if wide else costs.sum()
    if not bool(torch.isfinite(total)):
        if not bool(torch.isfinite(costs).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        if wide:
            raise ValueError(
                f"{name} is too large: the sum of its absolute values overflows float64, so the "
                "solvers' sums of costs would too; scale the costs down"
            )
    return costs


def as_partitionable(partitionable: object, num_classes: int, device: torch.device) -> torch.Tensor:
    """``partitionable[K]`` as a bool tensor on ``device`` (True = thing class, may split)."""
    if isinstance(partitionable, torch.Tensor):
        if partitionable.dtype != torch.bool:
            raise ValueError(f"partitionable must be a bool tensor, got {partitionable.dtype}")
        tensor = partitionable
    elif isinstance(partitionable, Sequence) and all(isinstance(p, bool) for p in partitionable):
        tensor = torch.tensor(list(partitionable), dtype=torch.bool)
    else:
        raise ValueError("partitionable must be a bool tensor or a sequence of bools")
    if tensor.dim() != 1 or tensor.shape[0] != num_classes:
        raise ValueError(
            f"partitionable must have shape [K] = [{num_classes}], got {tuple(tensor.shape)}"
        )
    return tensor.to(device)


def check_distances(distances: object, height: int, width: int) -> tuple[int, ...]:
    """Grid edge distances: integers ≥ 1, strictly increasing, each shorter than H or W.

    A distance ≥ H has no vertical edges and one ≥ W no horizontal ones (all-masked maps, fine);
    a distance ≥ both has no edges at all, which is an error.
    """
    if isinstance(distances, torch.Tensor):
        distances = distances.tolist()
    if not isinstance(distances, Sequence) or isinstance(distances, str):
        raise ValueError(f"distances must be a sequence of integers, got {distances!r}")
    if len(distances) == 0:
        raise ValueError("distances must hold at least one distance, got none")
    result = []
    for d in distances:
        if isinstance(d, bool) or not isinstance(d, numbers.Integral):
            raise ValueError(f"distances must hold integers, got {d!r}")
        if d < 1:
            raise ValueError(f"distances must be ≥ 1, got {d}")
        if result and d <= result[-1]:
            raise ValueError(f"distances must be strictly increasing, got {tuple(distances)}")
        if d >= height and d >= width:
            raise ValueError(
                f"distances: {d} is ≥ both the grid height {height} and width {width}, "
                "so it gives no edges"
            )
        result.append(int(d))
    return tuple(result)


def check_edges(edges: object, num_nodes: int, device: torch.device) -> torch.Tensor:
    """``edges[E, 2]`` as int64: end-points in [0, N), no self-loops."""
    edges = _require_tensor(edges, "edges")
    _check_device(edges, "edges", device)
    if edges.dtype not in _INDEX_TYPES:
        raise ValueError(f"edges must be int32 or int64, got {edges.dtype}")
    if edges.dim() != 2 or edges.shape[1] != 2:
        raise ValueError(f"edges must have shape [E, 2], got {tuple(edges.shape)}")
    edges = edges.long()
    if edges.numel():
        if bool((edges < 0).any()) or bool((edges >= num_nodes).any()):
            raise ValueError(f"edges has end-points outside [0, {num_nodes})")
        if bool((edges[:, 0] == edges[:, 1]).any()):
            raise ValueError("edges contains self-loops (both end-points equal)")
    return edges


def check_image_index(
    image_index: object, num_nodes: int, edges: torch.Tensor, device: torch.device
) -> tuple[torch.Tensor, int]:
    """``image_index[N]`` (int64) and the number of images; edges must not join two images.

    ``None`` means one image holding every node (zero images when there are no nodes).
    """
    if image_index is None:
        return torch.zeros(num_nodes, dtype=torch.int64, device=device), int(num_nodes > 0)
    image_index = _require_tensor(image_index, "image_index")
    if image_index.dtype not in _INDEX_TYPES:
        raise ValueError(f"image_index must be int32 or int64, got {image_index.dtype}")
    if image_index.shape != (num_nodes,):
        raise ValueError(
            f"image_index must have shape [N] = [{num_nodes}], got {tuple(image_index.shape)}"
        )
    _check_device(image_index, "image_index", device)
    image_index = image_index.long()
    if num_nodes == 0:
        return image_index, 0
    if bool((image_index < 0).any()):
        raise ValueError("image_index must be ≥ 0")
    if edges.numel() and bool((image_index[edges[:, 0]] != image_index[edges[:, 1]]).any()):
        raise ValueError("edges joins nodes of two different images (see image_index)")
    return image_index, int(image_index.max()) + 1


def check_label_mask(
    label_mask: object, num_images: int, num_classes: int, image_index: torch.Tensor
) -> torch.Tensor | None:
    """``label_mask[num_images, K]`` (bool, True = the image may not use that label).

    Every image that holds nodes must keep at least one label.
    """
    if label_mask is None:
        return None
    label_mask = _require_tensor(label_mask, "label_mask")
    if label_mask.dtype != torch.bool:
        raise ValueError(f"label_mask must be a bool tensor, got {label_mask.dtype}")
    if label_mask.shape != (num_images, num_classes):
        raise ValueError(
            f"label_mask must have shape [num_images, K] = [{num_images}, {num_classes}], "
            f"got {tuple(label_mask.shape)}"
        )
    _check_device(label_mask, "label_mask", image_index.device)
    occupied = torch.zeros(num_images, dtype=torch.bool, device=image_index.device)
    occupied[image_index] = True
    if bool((label_mask.all(dim=1) & occupied).any()):
        raise ValueError("label_mask forbids every label of an image that has nodes")
    return label_mask


def check_labels(
    labels: object, name: str, shape: tuple[int, ...], device: torch.device
) -> torch.Tensor:
    """An integer labeling tensor (``classes``, ``segments``, ``clusters``) of a given shape."""
    labels = _require_tensor(labels, name)
    if labels.dtype not in _INDEX_TYPES:
        raise ValueError(f"{name} must be int32 or int64, got {labels.dtype}")
    if tuple(labels.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {list(shape)}, got {tuple(labels.shape)}")
    _check_device(labels, name, device)
    return labels.long()


def check_class_labels(
    labels: object, name: str, shape: tuple[int, ...], num_classes: int, device: torch.device
) -> torch.Tensor:
    """A labeling tensor of classes, each in ``[0, K)``."""
    labels = check_labels(labels, name, shape, device)
    if labels.numel() and bool(((labels < 0) | (labels >= num_classes)).any()):
        raise ValueError(f"{name} must lie in [0, {num_classes})")
    return labels


def check_tiles(tiles: object, num_nodes: int, device: torch.device) -> torch.Tensor | None:
    """``tiles[N]`` (int64): the tile of every node, in ``[0, N)``; or None."""
    if tiles is None:
        return None
    tiles = check_labels(tiles, "tiles", (num_nodes,), device)
    if tiles.numel() and bool(((tiles < 0) | (tiles >= num_nodes)).any()):
        raise ValueError(f"tiles must lie in [0, N) = [0, {num_nodes})")
    return tiles


class GraphProblem(NamedTuple):
    node_costs: torch.Tensor  # [N, K] float32/float64
    edges: torch.Tensor  # [E, 2] int64
    edge_costs: torch.Tensor  # [E] float32/float64
    partitionable: torch.Tensor  # [K] bool
    image_index: torch.Tensor  # [N] int64
    num_images: int


def check_graph_problem(
    node_costs: object,
    edges: object,
    edge_costs: object,
    partitionable: object,
    image_index: object,
) -> GraphProblem:
    """Validate a graph AMWC problem (``node_costs [N, K]``, ``edges [E, 2]``, ``edge_costs [E]``,
    ``partitionable [K]``, ``image_index [N]`` or None) and return it normalised."""
    node_costs = check_costs(node_costs, "node_costs", 2)
    num_nodes, num_classes = node_costs.shape
    if num_classes == 0:
        raise ValueError("node_costs must have at least one class (K = 0)")
    device = node_costs.device
    edges = check_edges(edges, num_nodes, device)
    edge_costs = check_costs(edge_costs, "edge_costs", 1, device)
    if edge_costs.shape[0] != edges.shape[0]:
        raise ValueError(
            f"edge_costs must have shape [E] = [{edges.shape[0]}], got {tuple(edge_costs.shape)}"
        )
    partitionable = as_partitionable(partitionable, num_classes, device)
    image_index, num_images = check_image_index(image_index, num_nodes, edges, device)
    return GraphProblem(node_costs, edges, edge_costs, partitionable, image_index, num_images)


class GridProblem(NamedTuple):
    node_costs: torch.Tensor  # [B, K, H, W] float32/float64
    edge_costs: torch.Tensor  # [B, 2·|D|, H, W] float32/float64
    partitionable: torch.Tensor  # [K] bool
    distances: tuple[int, ...]


def check_grid_problem(
    node_costs: object, edge_costs: object, partitionable: object, distances: object
) -> GridProblem:
    """Validate a batched grid AMWC problem and return it normalised."""
    node_costs = check_costs(node_costs, "node_costs", 4)
    batch, num_classes, height, width = node_costs.shape
    if num_classes == 0:
        raise ValueError("node_costs must have at least one class (K = 0)")
    distances = check_distances(distances, height, width)
    edge_costs = check_costs(edge_costs, "edge_costs", 4, node_costs.device)
    expected = (batch, 2 * len(distances), height, width)
    if tuple(edge_costs.shape) != expected:
        raise ValueError(
            f"edge_costs must have shape {list(expected)}, got {tuple(edge_costs.shape)}"
        )
    partitionable = as_partitionable(partitionable, num_classes, node_costs.device)
    return GridProblem(node_costs, edge_costs, partitionable, distances)
