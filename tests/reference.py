"""Plain-Python references the tests compare the library against (slow, obviously correct)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence

import torch


def naive_objective(
    node_costs: Sequence[Sequence[float]],
    edges: Sequence[tuple[int, int]],
    edge_costs: Sequence[float],
    partitionable: Sequence[bool],
    classes: Sequence[int],
    clusters: Sequence[int],
) -> float:
    """AMWC objective by the definition, one node and one edge at a time."""
    total = sum(float(node_costs[i][classes[i]]) for i in range(len(classes)))
    for (u, v), cost in zip(edges, edge_costs, strict=True):
        if classes[u] != classes[v]:
            total += float(cost)
        elif partitionable[classes[u]] and clusters[u] != clusters[v]:
            total += float(cost)
    return total


def multicut_objective(node_costs, edges, edge_costs, classes, clusters) -> float:
    """Objective counting every edge between different clusters as cut (no stuff rule)."""
    total = sum(float(node_costs[i][classes[i]]) for i in range(len(classes)))
    return total + sum(
        float(c) for (u, v), c in zip(edges, edge_costs, strict=True) if clusters[u] != clusters[v]
    )


def set_partitions(n: int) -> Iterator[list[int]]:
    """All partitions of n items as restricted growth strings (block id of each item)."""
    if n == 0:
        yield []
        return

    def grow(prefix: list[int], blocks: int) -> Iterator[list[int]]:
        if len(prefix) == n:
            yield list(prefix)
            return
        for block in range(blocks + 1):
            prefix.append(block)
            yield from grow(prefix, max(blocks, block + 1))
            prefix.pop()

    yield from grow([0], 1)


def brute_force_optimum(node_costs, edges, edge_costs, partitionable) -> float:
    """Minimum AMWC objective over every partition and every class of every block."""
    n, k = len(node_costs), len(partitionable)
    best = float("inf")
    for blocks in set_partitions(n):
        count = max(blocks) + 1 if blocks else 0
        for block_classes in itertools.product(range(k), repeat=count):
            classes = [block_classes[b] for b in blocks]
            best = min(
                best, naive_objective(node_costs, edges, edge_costs, partitionable, classes, blocks)
            )
    return best


def tile_ids(height: int, width: int, tile: int) -> torch.Tensor:
    """``[H·W]`` the tile of every pixel (row-major), tiles numbered row by row."""
    rows = torch.arange(height).view(-1, 1) // tile
    cols = torch.arange(width).view(1, -1) // tile
    return (rows * -(-width // tile) + cols).flatten()
