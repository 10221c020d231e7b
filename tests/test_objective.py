"""The AMWC objective: by hand, against the plain-Python definition, grid form vs graph form."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gpucops
from gpucops.objectives import improvement_ratio
from tests.reference import naive_objective


def test_hand_computed_objective():
    # classes 0 (stuff) and 1 (thing); path 0-1-2-3
    node_costs = torch.tensor([[0.0, 1.0], [2.0, 0.5], [3.0, 0.0], [0.0, 4.0]])
    edges = torch.tensor([[0, 1], [1, 2], [2, 3], [0, 3]])
    edge_costs = torch.tensor([1.0, 2.0, 4.0, 8.0])
    partitionable = torch.tensor([False, True])
    classes = torch.tensor([0, 1, 1, 0])
    clusters = torch.tensor([0, 1, 2, 3])  # nodes 1, 2: one thing class, two clusters
    # nodes: 0 + 0.5 + 0 + 0 ; cut: 0-1 (classes differ) 1, 1-2 (thing, split) 2, 2-3 4;
    # 0-3: same stuff class, never cut although the clusters differ
    value = gpucops.objective_graph(node_costs, edges, edge_costs, partitionable, classes, clusters)
    assert value.dtype == torch.float64 and value.tolist() == [0.5 + 1 + 2 + 4]


def test_objective_per_image():
    node_costs = torch.tensor([[1.0], [2.0], [4.0]])
    edges = torch.tensor([[0, 2]])
    value = gpucops.objective_graph(
        node_costs,
        edges,
        torch.tensor([8.0]),
        torch.tensor([True]),
        torch.zeros(3, dtype=torch.long),
        torch.tensor([0, 1, 1]),
        image_index=torch.tensor([1, 0, 1]),
    )
    assert value.tolist() == [2.0, 1.0 + 4.0 + 8.0]


@given(
    seed=st.integers(0, 2**31),
    batch=st.integers(0, 3),
    height=st.integers(2, 9),
    width=st.integers(2, 9),
    num_classes=st.integers(1, 4),
    distances=st.sampled_from([(1,), (1, 2), (1, 3, 4), (2, 5)]),
)
def test_grid_objective_equals_graph_objective_and_definition(
    seed, batch, height, width, num_classes, distances
):
    if max(distances) >= height and max(distances) >= width:
        return
    generator = torch.Generator().manual_seed(seed)
    node_costs = torch.randn(batch, num_classes, height, width, generator=generator)
    edge_costs = torch.randn(batch, 2 * len(distances), height, width, generator=generator)
    partitionable = torch.rand(num_classes, generator=generator) < 0.5
    classes = torch.randint(0, num_classes, (batch, height, width), generator=generator)
    segments = torch.randint(0, 3, (batch, height, width), generator=generator)
    grid_value = gpucops.objective(
        node_costs, edge_costs, partitionable, classes, segments, distances
    )
    nodes, edges, costs, image_index = gpucops.grid_to_graph(node_costs, edge_costs, distances)
    graph_value = gpucops.objective_graph(
        nodes,
        edges,
        costs,
        partitionable,
        classes.flatten(),
        segments.flatten(),
        image_index if batch else None,
    )
    assert grid_value.shape == (batch,) and graph_value.shape == (batch,)
    torch.testing.assert_close(grid_value, graph_value, rtol=0, atol=1e-9)
    nodes_per_image = height * width
    per_edge_image = edges[:, 0] // nodes_per_image
    for b in range(batch):
        local = slice(b * nodes_per_image, (b + 1) * nodes_per_image)
        mask = per_edge_image == b
        expected = naive_objective(
            nodes[local].tolist(),
            (edges[mask] - b * nodes_per_image).tolist(),
            costs[mask].tolist(),
            partitionable.tolist(),
            classes[b].flatten().tolist(),
            segments[b].flatten().tolist(),
        )
        assert grid_value[b].item() == pytest.approx(expected, abs=1e-9)


def test_improvement_ratio_is_the_share_of_the_references_gain():
    trivial = torch.tensor([5.0, 5.0, 5.0, 5.0], dtype=torch.float64)
    objective = torch.tensor([3.0, 0.0, 5.0, 4.0], dtype=torch.float64)
    reference = torch.tensor([1.0, 1.0, 5.0, 5.0], dtype=torch.float64)
    ratio = improvement_ratio(trivial, objective, reference)
    # half the gain, more than the reference's, neither gains (1, not 0/0), only the solver gains
    assert ratio.tolist() == [0.5, 1.25, 1.0, float("inf")]
