"""Blocks of nodes for the exact greedy pre-pass of the parallel solver.

The parallel rounds pick merges from all edges at once, before any cluster has summed its evidence,
and lose 0.5–1.6 % of the sequential greedy's objective improvement that way. The pre-pass runs
the sequential greedy itself — its order, ties and arithmetic — inside small blocks of nodes (the
tiles of a pixel grid), over the edges with both end-points in one block, every block on its own
(kernel ``block_greedy`` of ``cuda/contraction.cu``: one block per thread); the rounds then go on
from the contracted graph. Reasons and measurements in ``docs/solver.md``.

:class:`NodeBlocks` lists the blocks of one image (a batch repeats them image by image);
:func:`grid_tiles` builds a grid's tiles (cached); :func:`node_blocks` any partition;
:func:`block_roots` runs the pre-pass on the kernels or — the reference — with the sequential
solver on the edges inside blocks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import torch

from .contraction_kernels import ContractionKernels
from .grid import _sorted_grid_edges
from .sequential import contract_sequential

__all__ = ["NodeBlocks", "block_roots", "grid_tiles", "node_blocks"]


@dataclass(frozen=True)
class NodeBlocks:
    """A partition of one image's nodes into blocks, with the edges inside each block. In a batch
    image i's nodes are offset by ``i · nodes_per_image`` and its edges by ``i ·
    edges_per_image`` (the layout of :func:`gpucops.grid.grid_to_graph`).

    Attributes:
        node_start: ``[num_blocks + 1]`` int64 offsets into ``block_nodes``.
        block_nodes: ``[n]`` int64 node ids of the image, block by block, increasing in a block.
        edge_start: ``[num_blocks + 1]`` int64 offsets into ``block_edges``.
        block_edges: ``[m]`` int64 indices into the image's edge list of the edges with both
            end-points in one block, block by block, increasing in a block.
        edge_ends: ``[m, 2]`` int32 positions of their end-points in the block's node list.
        nodes_per_image, edges_per_image: the sizes of one image's graph.
    """

    node_start: torch.Tensor
    block_nodes: torch.Tensor
    edge_start: torch.Tensor
    block_edges: torch.Tensor
    edge_ends: torch.Tensor
    nodes_per_image: int
    edges_per_image: int

    @property
    def num_blocks(self) -> int:
        return self.node_start.shape[0] - 1

    def to(self, device: torch.device) -> NodeBlocks:
        return NodeBlocks(
            self.node_start.to(device),
            self.block_nodes.to(device),
            self.edge_start.to(device),
            self.block_edges.to(device),
            self.edge_ends.to(device),
            self.nodes_per_image,
            self.edges_per_image,
        )


def node_blocks(block_of: torch.Tensor, edges: torch.Tensor) -> NodeBlocks:
    """The blocks of one image given each node's block.

    Args:
        block_of: ``[n]`` int64 block of every node, in ``[0, num_blocks)``.
        edges: ``[E, 2]`` int64, the image's edge list (distinct pairs, no self-loops).
    """
    num_nodes = block_of.shape[0]
    num_blocks = int(block_of.max()) + 1 if num_nodes else 0
    block_nodes = torch.argsort(block_of, stable=True)
    position = torch.empty_like(block_nodes)
    node_counts = torch.bincount(block_of, minlength=num_blocks)
    node_start = torch.cat([node_counts.new_zeros(1), torch.cumsum(node_counts, 0)])
    position[block_nodes] = torch.arange(num_nodes) - node_start[block_of[block_nodes]]
    inside = (block_of[edges[:, 0]] == block_of[edges[:, 1]]).nonzero().flatten()
    inside = inside[torch.argsort(block_of[edges[inside, 0]], stable=True)]
    edge_counts = torch.bincount(block_of[edges[inside, 0]], minlength=num_blocks)
    return NodeBlocks(
        node_start=node_start,
        block_nodes=block_nodes,
        edge_start=torch.cat([edge_counts.new_zeros(1), torch.cumsum(edge_counts, 0)]),
        block_edges=inside,
        edge_ends=position[edges[inside]].to(torch.int32),
        nodes_per_image=num_nodes,
        edges_per_image=edges.shape[0],
    )


@functools.lru_cache(maxsize=8)
def grid_tiles(
    height: int, width: int, distances: tuple[int, ...], tile: int, device: torch.device
) -> NodeBlocks:
    """The ``tile × tile`` pixel tiles of an H×W grid (partial at the right and bottom), with the
    edges inside them as indices into the grid's sorted edge list (``grid_to_graph(...,
    sort_edges=True)``), on ``device``."""
    edges, _ = _sorted_grid_edges(height, width, distances, torch.device("cpu"))
    rows = torch.arange(height).view(-1, 1) // tile
    cols = torch.arange(width).view(1, -1) // tile
    block_of = (rows * (-(-width // tile)) + cols).flatten()
    return node_blocks(block_of, edges).to(device)


def block_roots(
    costs: torch.Tensor,
    edges: torch.Tensor,
    weights: torch.Tensor,
    blocks: NodeBlocks,
    num_images: int,
    kernels: ContractionKernels | None = None,
) -> torch.Tensor:
    """The pre-pass: the sequential greedy inside every block of every image.

    Args:
        costs: ``[N, K]`` float64 class costs (forbidden labels +inf), N = images × nodes.
        edges: ``[E, 2]`` int64 and ``weights [E]`` float64: the batch's edge lists, image by
            image, in the order ``blocks`` indexes.
        kernels: run kernel ``block_greedy``; None = the sequential reference on the edges inside
            blocks (the same clusters: the kernel follows its order and arithmetic).
    Returns:
        ``[N]`` int64: the lowest node id of each node's cluster.
    """
    if kernels is not None:
        return kernels.block_greedy(costs, weights, blocks, num_images)
    device = costs.device
    offsets = torch.arange(num_images, device=device) * blocks.edges_per_image
    inside = (blocks.block_edges.unsqueeze(0) + offsets.unsqueeze(1)).flatten()
    image_index = torch.arange(num_images, device=device).repeat_interleave(blocks.nodes_per_image)
    _, clusters, _ = contract_sequential(costs, edges[inside], weights[inside], image_index)
    clusters = clusters.to(device)
    nodes = torch.arange(costs.shape[0], device=device)
    lowest = torch.full_like(nodes, costs.shape[0]).scatter_reduce_(
        0, clusters, nodes, reduce="amin"
    )
    return lowest[clusters]
