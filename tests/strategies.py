"""Random problems shared by the solver tests: hypothesis strategies and seeded generators."""

from __future__ import annotations

import torch
from hypothesis import strategies as st


@st.composite
def small_graphs(draw, max_nodes=6, max_classes=3):
    n = draw(st.integers(1, max_nodes))
    k = draw(st.integers(1, max_classes))
    # costs on a coarse grid of values, so ties (which the tie rules must settle) are common
    value = st.integers(-4, 4).map(lambda v: v / 2)
    node_costs = draw(st.lists(st.lists(value, min_size=k, max_size=k), min_size=n, max_size=n))
    pairs = [(i, j) for i in range(n) for j in range(i + 1, n)]
    edges = draw(st.lists(st.sampled_from(pairs), max_size=10)) if pairs else []
    edge_costs = draw(st.lists(value, min_size=len(edges), max_size=len(edges)))
    partitionable = draw(st.lists(st.booleans(), min_size=k, max_size=k))
    return node_costs, edges, edge_costs, partitionable


@st.composite
def labelled_graphs(draw, max_nodes=6, max_classes=3):
    """A small graph and a feasible labeling of it: random clusters, one class each."""
    node_costs, edges, edge_costs, partitionable = draw(small_graphs(max_nodes, max_classes))
    n, k = len(node_costs), len(partitionable)
    clusters = draw(st.lists(st.integers(0, n - 1), min_size=n, max_size=n))
    cluster_class = draw(st.lists(st.integers(0, k - 1), min_size=n, max_size=n))
    return (
        node_costs,
        edges,
        edge_costs,
        partitionable,
        [cluster_class[c] for c in clusters],
        clusters,
    )


def random_round(seed: int, clusters: int, k: int, masked: bool):
    """A random contraction state: class costs (some +inf when masked), coalesced edges."""
    g = torch.Generator().manual_seed(seed)
    costs = torch.randint(-4, 5, (clusters, k), generator=g).double() / 2
    if masked and k > 1:
        forbidden = torch.rand(clusters, k, generator=g) < 0.3
        forbidden[:, 0] = False
        costs = costs.masked_fill(forbidden, float("inf"))
    pairs = torch.combinations(torch.arange(clusters), 2)
    edges = pairs[torch.randperm(pairs.shape[0], generator=g)[: 3 * clusters]]
    edges = edges[torch.argsort(edges[:, 0] * clusters + edges[:, 1])].contiguous()
    weights = torch.randint(-4, 5, (edges.shape[0],), generator=g).double() / 2
    return costs, edges, weights
