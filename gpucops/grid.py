"""The grid graph of COPS: long-range "+"-shaped edges at distances D, in the official layout.

Edge maps ``edge_costs[B, 2·|D|, H, W]``: for distance index i, channel 2i holds the vertical
("row") edges and channel 2i+1 the horizontal ("col") ones. The edge stored at map position
(r, c) of distance d joins

* d = 1: (r, c)–(r+1, c) (row), (r, c)–(r, c+1) (col);
* d > 1: (r − ⌈d/2⌉, c)–(r + ⌊d/2⌋, c) (row), (r, c − ⌈d/2⌉)–(r, c + ⌊d/2⌋) (col), so that for
  the even distances COPS uses the edge is centred on its map position (supplementary eq. 10/11).

Positions whose end-points fall outside the image carry no edge (masked, never wrapped). Edge ids
of the edge list follow the official order: for each d, all valid row edges (row-major), then all
valid col edges. Nodes are numbered row-major, ``r·W + c``; in a batch, image b's nodes are offset
by ``b·H·W`` and its edges follow image b−1's.
"""

from __future__ import annotations

import functools

import torch

from ._validate import check_distances

__all__ = [
    "both_ends_maps",
    "cut_maps",
    "edge_offsets",
    "edge_values_to_maps",
    "edge_weight_maps",
    "grid_edges",
    "grid_graph",
    "grid_to_graph",
    "sorted_grid_edges",
    "square_tiles",
    "stride_samples",
]


def edge_offsets(distance: int) -> tuple[int, int]:
    """(before, after): the edge at position p joins p − before and p + after along its axis."""
    if distance == 1:
        return 0, 1
    return (distance + 1) // 2, distance // 2


def stride_samples(length: int, stride: int) -> torch.Tensor:
    """The pixel each cell of a stride-``stride`` grid samples along an axis of ``length``
    pixels: ``stride·i + stride // 2`` (the official target generator's ``[s//2::s]``) for
    ``⌈length / stride⌉`` cells, the last pixel for a partial last cell."""
    cells = torch.arange(-(-length // stride))
    return (cells * stride + stride // 2).clamp(max=length - 1)


@functools.lru_cache(maxsize=32)
def _grid_edges_cpu(
    height: int, width: int, distances: tuple[int, ...]
) -> tuple[torch.Tensor, torch.Tensor]:
    edges, map_index = [], []
    rows = torch.arange(height).view(-1, 1)
    cols = torch.arange(width).view(1, -1)
    for i, d in enumerate(distances):
        before, after = edge_offsets(d)
        # channel 2i: vertical edges, valid for before ≤ r < H − after
        r = rows[before : height - after] if d < height else rows[:0]
        u, v = (r - before) * width + cols, (r + after) * width + cols
        edges.append(torch.stack([u.flatten(), v.flatten()], dim=1))
        map_index.append(((2 * i * height + r) * width + cols).flatten())
        # channel 2i+1: horizontal edges, valid for before ≤ c < W − after
        c = cols[:, before : width - after] if d < width else cols[:, :0]
        u, v = rows * width + c - before, rows * width + c + after
        edges.append(torch.stack([u.flatten(), v.flatten()], dim=1))
        map_index.append((((2 * i + 1) * height + rows) * width + c).flatten())
    return torch.cat(edges).long(), torch.cat(map_index).long()


def grid_edges(
    height: int, width: int, distances: tuple[int, ...], device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """The edges of one H×W grid in official order.

    Returns ``edges [E, 2]`` (int64 node ids ``r·W + c``, first end-point the smaller) and
    ``map_index [E]`` (int64): the flat position of each edge in a ``[2·|D|, H, W]`` edge map, so
    ``edge_costs.reshape(B, -1)[:, map_index]`` lists a batch's edge costs in edge-id order.
    New tensors: the caller may write to them (the layout is cached inside, never handed out).
    """
    edges, map_index = _grid_edges(height, width, distances, device)
    return edges.clone(), map_index.clone()


def _grid_edges(
    height: int, width: int, distances: tuple[int, ...], device: torch.device | str
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`grid_edges` for readers in this package: on the CPU the cached tensors themselves
    (never written to)."""
    distances = check_distances(distances, height, width)
    edges, map_index = _grid_edges_cpu(int(height), int(width), distances)
    return edges.to(device), map_index.to(device)


@functools.lru_cache(maxsize=8)
def sorted_grid_edges(
    height: int, width: int, distances: tuple[int, ...], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor]:
    """The grid's edges sorted by (first, second) end-point and their map positions, kept on
    ``device`` (a solve on a GPU then copies no edge list to it). Cached: the tensors are shared,
    callers must not write to them (the solver's tiles index this order)."""
    edges, map_index = _grid_edges_cpu(height, width, distances)
    order = torch.argsort(edges[:, 0] * (height * width) + edges[:, 1])
    return edges[order].to(device), map_index[order].to(device)


def square_tiles(
    height: int, width: int, tile: int, batch: int = 1, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``[B·H·W]`` int64: the ``tile × tile`` pixel tile (partial at the right and bottom) of
    every node of :func:`grid_to_graph`'s numbering, numbered row by row and image by image — the
    ``tiles`` of :func:`gpucops.solve_graph` and :func:`gpucops.multicut` that match
    :func:`gpucops.solve`'s ``tile``."""
    for name, value, least in (("height", height, 1), ("width", width, 1), ("tile", tile, 1),
                               ("batch", batch, 0)):  # fmt: skip
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer ≥ {least}, got {value!r}")
    columns = -(-width // tile)
    rows = torch.arange(height, device=device).view(-1, 1) // tile
    cols = torch.arange(width, device=device).view(1, -1) // tile
    per_image = (rows * columns + cols).flatten()
    count = -(-height // tile) * columns
    offsets = torch.arange(batch, device=device).view(-1, 1) * count
    return (per_image.view(1, -1) + offsets).flatten()


def grid_to_graph(
    node_costs: torch.Tensor,
    edge_costs: torch.Tensor,
    distances: tuple[int, ...],
    sort_edges: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Batched grid problem → one block-diagonal graph.

    Args:
        node_costs: ``[B, K, H, W]``.
        edge_costs: ``[B, 2·|D|, H, W]``.
        sort_edges: list each image's edges sorted by (first, second) end-point instead of in
            the official order — the order the parallel solver works in, so it can skip its
            first sort (an order fixed per grid size, cached).
    Returns:
        ``node_costs [B·H·W, K]``, ``edges [B·E, 2]``, ``edge_costs [B·E]``, ``image_index [B·H·W]``
        (image b's nodes are ``b·H·W + r·W + c``; its edges follow image b−1's).
    """
    return grid_graph(node_costs, edge_costs, distances, sort_edges, share_edges=False)


def grid_graph(
    node_costs: torch.Tensor,
    edge_costs: torch.Tensor,
    distances: tuple[int, ...],
    sort_edges: bool,
    share_edges: bool,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`grid_to_graph`; ``share_edges``: for one image, return the cached edge list itself
    instead of a copy (hundreds of MB at full resolution) — for callers that never write to it,
    as the solver."""
    batch, num_classes, height, width = node_costs.shape
    if sort_edges:
        distances = check_distances(distances, height, width)
        edges, map_index = sorted_grid_edges(height, width, distances, node_costs.device)
    else:
        edges, map_index = _grid_edges(height, width, distances, node_costs.device)
    if batch == 1 and share_edges:
        graph_edges = edges
    else:
        offsets = torch.arange(batch, device=edges.device).view(-1, 1, 1) * (height * width)
        graph_edges = (edges.unsqueeze(0) + offsets).reshape(-1, 2)
    graph_edge_costs = edge_costs.flatten(1)[:, map_index].reshape(-1)
    graph_node_costs = node_costs.permute(0, 2, 3, 1).reshape(-1, num_classes)
    image_index = torch.arange(batch, device=edges.device).repeat_interleave(height * width)
    return graph_node_costs, graph_edges, graph_edge_costs, image_index


def edge_values_to_maps(
    values: torch.Tensor, height: int, width: int, distances: tuple[int, ...], fill: float = 0
) -> torch.Tensor:
    """Inverse of the edge-list order: ``values [B, E]`` → maps ``[B, 2·|D|, H, W]``.

    Masked positions (no edge) hold ``fill``.
    """
    _, map_index = _grid_edges(height, width, distances, values.device)
    if values.dim() != 2 or values.shape[1] != map_index.numel():
        raise ValueError(
            f"values must have shape [B, {map_index.numel()}], got {tuple(values.shape)}"
        )
    maps = values.new_full((values.shape[0], 2 * len(distances) * height * width), fill)
    maps[:, map_index] = values
    return maps.view(values.shape[0], 2 * len(distances), height, width)


def _end_values(pixels: torch.Tensor, distances: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Values ``[B, E]`` of ``pixels [B, H, W]`` at the first and second end of every edge."""
    edges, _ = _grid_edges(pixels.shape[1], pixels.shape[2], distances, pixels.device)
    flat = pixels.flatten(1)
    return flat[:, edges[:, 0]], flat[:, edges[:, 1]]


def cut_maps(labels: torch.Tensor, distances: tuple[int, ...]) -> torch.Tensor:
    """Cut indicators ``[B, 2·|D|, H, W]`` float: 1 where the edge stored there joins pixels of
    different ``labels [B, H, W]`` (segment ids, or the labels of a multiway cut), else 0."""
    first, second = _end_values(labels, distances)
    values = (first != second).float()
    return edge_values_to_maps(values, labels.shape[1], labels.shape[2], distances)


def both_ends_maps(keep: torch.Tensor, distances: tuple[int, ...]) -> torch.Tensor:
    """``[B, 2·|D|, H, W]`` bool: True where the edge stored there has both ends in ``keep
    [B, H, W]`` (e.g. not void)."""
    first, second = _end_values(keep, distances)
    return edge_values_to_maps(first & second, keep.shape[1], keep.shape[2], distances, False)


def edge_weight_maps(pixel_weights: torch.Tensor, distances: tuple[int, ...]) -> torch.Tensor:
    """``[B, 2·|D|, H, W]`` weight of the edge stored at each position: the larger of its two
    ends' ``pixel_weights [B, H, W]`` where both are positive, else 0 (the official affinity
    loss weights: an edge touching void or crowd does not count)."""
    first, second = _end_values(pixel_weights, distances)
    values = torch.where((first > 0) & (second > 0), torch.maximum(first, second), 0)
    return edge_values_to_maps(values, pixel_weights.shape[1], pixel_weights.shape[2], distances)
