"""Hypothesis strategies shared by the solver tests."""

from __future__ import annotations

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
