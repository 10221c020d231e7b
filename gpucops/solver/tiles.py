"""Tiles of nodes for the exact greedy pre-pass of the parallel solver.

The parallel rounds pick merges from all edges at once, before any cluster has summed its evidence,
and lose some of the sequential greedy's objective improvement that way. The pre-pass runs the
sequential greedy itself — its order, ties and arithmetic — inside small tiles of nodes (square
pixel tiles of a grid, or any partition of a graph's nodes), over the edges with both end-points
in one tile, every tile on its own (kernel ``tile_greedy`` of ``cuda/contraction.cu``, one tile per
thread); the rounds then go on from the contracted graph. Reasons in ``docs/solver.md``.

:class:`Tiles` lists the tiles of one image (a batch repeats them image by image);
:func:`grid_tiles` builds a grid's square tiles (cached); :func:`tiles_of` any partition.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from ..grid import sorted_grid_edges

__all__ = ["Tiles", "grid_tiles", "node_tiles", "tiles_of"]


@dataclass(frozen=True)
class Tiles:
    """A partition of one image's nodes into tiles, with the edges inside each tile. In a batch
    image i's nodes are offset by ``i · nodes_per_image`` and its edges by ``i ·
    edges_per_image`` (the layout of :func:`gpucops.grid.grid_to_graph`).

    Attributes:
        node_start: ``[num_tiles + 1]`` int64 offsets into ``tile_nodes``.
        tile_nodes: ``[n]`` int64 node ids of the image, tile by tile, increasing in a tile.
        edge_start: ``[num_tiles + 1]`` int64 offsets into ``tile_edges``.
        tile_edges: ``[m]`` int64 indices into the image's edge list of the edges with both
            end-points in one tile, tile by tile, increasing in a tile.
        edge_ends: ``[m, 2]`` int32 positions of their end-points in the tile's node list.
        nodes_per_image, edges_per_image: the sizes of one image's graph.
    """

    node_start: torch.Tensor
    tile_nodes: torch.Tensor
    edge_start: torch.Tensor
    tile_edges: torch.Tensor
    edge_ends: torch.Tensor
    nodes_per_image: int
    edges_per_image: int

    @property
    def num_tiles(self) -> int:
        return self.node_start.shape[0] - 1

    def to(self, device: torch.device) -> Tiles:
        return Tiles(
            self.node_start.to(device),
            self.tile_nodes.to(device),
            self.edge_start.to(device),
            self.tile_edges.to(device),
            self.edge_ends.to(device),
            self.nodes_per_image,
            self.edges_per_image,
        )


def tiles_of(tile_of: torch.Tensor, edges: torch.Tensor) -> Tiles:
    """The tiles of one image given each node's tile.

    Args:
        tile_of: ``[n]`` int64 tile of every node, in ``[0, num_tiles)``.
        edges: ``[E, 2]`` int64, the image's edge list (distinct pairs, no self-loops).
    """
    num_nodes = tile_of.shape[0]
    num_tiles = int(tile_of.max()) + 1 if num_nodes else 0
    tile_nodes = torch.argsort(tile_of, stable=True)
    position = torch.empty_like(tile_nodes)
    node_counts = torch.bincount(tile_of, minlength=num_tiles)
    node_start = torch.cat([node_counts.new_zeros(1), torch.cumsum(node_counts, 0)])
    position[tile_nodes] = torch.arange(num_nodes) - node_start[tile_of[tile_nodes]]
    # one gather of the end-points' tiles serves the test, the sort key and the counts
    edge_tile = tile_of[edges]
    inside = (edge_tile[:, 0] == edge_tile[:, 1]).nonzero().flatten()
    inside_tile, order = torch.sort(edge_tile[inside, 0], stable=True)
    inside = inside[order]
    edge_counts = torch.bincount(inside_tile, minlength=num_tiles)
    return Tiles(
        node_start=node_start,
        tile_nodes=tile_nodes,
        edge_start=torch.cat([edge_counts.new_zeros(1), torch.cumsum(edge_counts, 0)]),
        tile_edges=inside,
        edge_ends=position[edges[inside]].to(torch.int32),
        nodes_per_image=num_nodes,
        edges_per_image=edges.shape[0],
    )


@functools.lru_cache(maxsize=8)
def grid_tiles(
    height: int, width: int, distances: tuple[int, ...], tile: int, device: torch.device
) -> Tiles:
    """The ``tile × tile`` pixel tiles of an H×W grid (partial at the right and bottom), with the
    edges inside them as indices into the grid's sorted edge list (``grid_to_graph(...,
    sort_edges=True)``), on ``device``."""
    edges, _ = sorted_grid_edges(height, width, distances, torch.device("cpu"))
    rows = torch.arange(height).view(-1, 1) // tile
    cols = torch.arange(width).view(1, -1) // tile
    tile_of = (rows * (-(-width // tile)) + cols).flatten()
    return tiles_of(tile_of, edges).to(device)


def node_tiles(tile_of: torch.Tensor, edges: torch.Tensor) -> Tiles:
    """The tiles given per node (``tile_of [N]``, any ids) of a whole batch, as one image: ids
    made compact, listed on the CPU, returned on ``edges``' device."""
    compact = torch.unique(tile_of.cpu(), return_inverse=True)[1]
    return tiles_of(compact, edges.cpu()).to(edges.device)
