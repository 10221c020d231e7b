"""Invariants every solver keeps (the sequential reference and the parallel contraction):
never better than the optimum, feasible output, objectives that agree, the multicut objective
before the stuff merge never above the trivial labeling's, determinism, batch = single solves,
label masks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gpucops
from gpucops.solver.sequential import contract_sequential
from gpucops.synthetic import make_problem
from tests.contraction import contract as contract_parallel
from tests.golden import random_graph
from tests.reference import brute_force_optimum, multicut_objective, naive_objective, tile_ids
from tests.strategies import small_graphs

# (method, options): the reference, and the parallel solver with its defaults (grids: 16×16
# tiles; graphs: no tiles; these small graphs are then finished by the exact greedy of the tail),
# with small tiles (grids: 3×3; graphs: 3 consecutive nodes) and rounds to the end, and plain (no
# tiles, every positive score in every round, no tail)
SOLVERS = [
    ("sequential", {}),
    ("parallel", {}),
    ("parallel", {"tile": 3, "tail": 0}),
    ("parallel", {"tile": 0, "top_fraction": None, "tail": 0}),
]
IDS = ["sequential", "parallel", "parallel-tile3", "parallel-plain"]


def graph_options(options: dict, num_nodes: int) -> dict:
    """The options for a graph: a tile of t becomes tiles of t consecutive nodes."""
    others = {k: v for k, v in options.items() if k != "tile"}
    tile = options.get("tile", 0)
    return {**others, "tiles": torch.arange(num_nodes) // tile} if tile else others


def solve_graph(graph, method, options, **kwargs):
    node_costs, edges, edge_costs, partitionable = graph
    options = graph_options(options, len(node_costs))
    return gpucops.solve_graph(
        torch.tensor(node_costs, dtype=torch.float64),
        torch.tensor(edges, dtype=torch.long).view(-1, 2),
        torch.tensor(edge_costs, dtype=torch.float64),
        torch.tensor(partitionable),
        method=method,
        **options,
        **kwargs,
    )


def contract(graph, method, options):
    """Classes and clusters before the stuff merge."""
    node_costs, edges, edge_costs, _ = graph
    args = (
        torch.tensor(node_costs, dtype=torch.float64),
        torch.tensor(edges, dtype=torch.long).view(-1, 2),
        torch.tensor(edge_costs, dtype=torch.float64),
        torch.zeros(len(node_costs), dtype=torch.long),
    )
    if method == "sequential":
        classes, clusters, _ = contract_sequential(*args)
    else:
        result = contract_parallel(*args, 1, **graph_options(options, len(node_costs)))
        classes, clusters = result.classes, result.clusters
    return classes.tolist(), clusters.tolist()


@pytest.mark.parametrize(("method", "options"), SOLVERS, ids=IDS)
@given(graph=small_graphs())
def test_never_better_than_the_brute_force_optimum(method, options, graph):
    lab = solve_graph(graph, method, options)
    assert lab.objective.item() >= brute_force_optimum(*graph) - 1e-9


@pytest.mark.parametrize(("method", "options"), SOLVERS, ids=IDS)
@given(graph=small_graphs(max_nodes=10, max_classes=4))
def test_output_is_feasible_and_objectives_agree(method, options, graph):
    node_costs, edges, edge_costs, partitionable = graph
    lab = solve_graph(graph, method, options)
    classes, segments = lab.classes.tolist(), lab.segments.tolist()
    segment_class = {}
    for c, s in zip(classes, segments, strict=True):
        assert segment_class.setdefault(s, c) == c  # one class per segment
    stuff = [c for c in segment_class.values() if not partitionable[c]]
    assert len(stuff) == len(set(stuff))  # one segment per stuff class
    first_seen = list(dict.fromkeys(segments))
    assert first_seen == list(range(len(first_seen)))  # compact, numbered by first node
    expected = naive_objective(node_costs, edges, edge_costs, partitionable, classes, segments)
    assert lab.objective.item() == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("method", "options"), SOLVERS, ids=IDS)
@given(graph=small_graphs(max_nodes=10, max_classes=4))
def test_multicut_objective_before_stuff_merge_never_exceeds_trivial(method, options, graph):
    node_costs, edges, edge_costs, _ = graph
    n = len(node_costs)
    classes, clusters = contract(graph, method, options)
    trivial_classes = torch.tensor(node_costs).argmin(dim=1).tolist()
    trivial = multicut_objective(node_costs, edges, edge_costs, trivial_classes, list(range(n)))
    assert multicut_objective(node_costs, edges, edge_costs, classes, clusters) <= trivial + 1e-9
    for cluster in set(clusters):  # every cluster takes the argmin of its summed costs
        members = [i for i in range(n) if clusters[i] == cluster]
        summed = torch.tensor(node_costs, dtype=torch.float64)[members].sum(dim=0)
        assert {classes[i] for i in members} == {int(summed.argmin())}


@pytest.mark.parametrize(("method", "options"), SOLVERS, ids=IDS)
def test_label_mask_forbids_classes_per_image(method, options):
    node_costs = [[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [0.0, 3.0, 1.0]]
    mask = torch.tensor([[True, False, False], [True, True, False]])
    lab = solve_graph(
        (node_costs, [[0, 1]], [5.0], [True] * 3),
        method,
        options,
        image_index=torch.tensor([0, 0, 1]),
        label_mask=mask,
    )
    assert lab.classes.tolist() == [1, 1, 2]
    assert lab.segments.tolist() == [0, 0, 0]


@pytest.mark.parametrize(("method", "options"), SOLVERS, ids=IDS)
@given(
    seed=st.integers(0, 10_000),
    batch=st.integers(1, 3),
    height=st.integers(4, 16),
    width=st.integers(4, 16),
    num_classes=st.sampled_from([2, 5, 19]),
)
def test_grid_batch_equals_single_solves_and_is_deterministic(
    method, options, seed, batch, height, width, num_classes
):
    p = make_problem(batch, height, width, num_classes, distances=(1, 2, 3), seed=seed)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    lab = gpucops.solve(*args, method=method, **options)
    again = gpucops.solve(*args, method=method, **options)
    assert torch.equal(lab.classes, again.classes) and torch.equal(lab.segments, again.segments)
    assert torch.equal(lab.objective, again.objective)
    reported = gpucops.objective(*args[:3], lab.classes, lab.segments, p.distances)
    torch.testing.assert_close(lab.objective, reported, rtol=1e-12, atol=1e-9)
    for b in range(batch):
        one = gpucops.solve(
            p.node_costs[b : b + 1],
            p.edge_costs[b : b + 1],
            *args[2:],
            method=method,
            **options,
        )
        assert torch.equal(one.classes[0], lab.classes[b])
        assert torch.equal(one.segments[0], lab.segments[b])
        assert one.objective.item() == lab.objective[b].item()


@pytest.mark.parametrize(("method", "options"), SOLVERS, ids=IDS)
def test_graph_batch_with_unsorted_images_equals_the_grid_solve(method, options):
    p = make_problem(2, 10, 12, 5, distances=(1, 2, 4), seed=7)
    nodes, edges, costs, image_index = gpucops.grid_to_graph(
        p.node_costs, p.edge_costs, p.distances
    )
    # interleave the two images' nodes: position[i] is the new index of node i
    n = nodes.shape[0]
    order = torch.argsort(torch.arange(n) % (n // 2) * 2 + image_index)
    position = torch.empty_like(order)
    position[order] = torch.arange(n)
    # the grid's tiles (one per image at the default 16) given per node of the graph
    tile = options.get("tile", 16)
    tiles = (tile_ids(10, 12, tile).repeat(2) + 16 * image_index)[order] if tile else None
    lab = gpucops.solve_graph(
        nodes[order],
        position[edges],
        costs,
        p.partitionable,
        image_index=image_index[order],
        method=method,
        **{k: v for k, v in options.items() if k != "tile"},
        tiles=tiles,
    )
    grid = gpucops.solve(
        p.node_costs, p.edge_costs, p.partitionable, p.distances, method=method, **options
    )
    assert torch.equal(lab.classes[position].view(2, 10, 12), grid.classes)
    # segment ids are numbered by first node, which the interleaving keeps within an image
    assert torch.equal(lab.segments[position].view(2, 10, 12), grid.segments)
    torch.testing.assert_close(lab.objective, grid.objective, rtol=1e-12, atol=1e-9)


@pytest.mark.parametrize("use_kernels", [True, False])
def test_the_inputs_are_left_untouched(use_kernels):
    # float64 row-major costs, nodes grouped by image (no reordering copy) and a label mask: the
    # case where a float64 working copy could be the caller's own tensor
    graph = random_graph(3, 200, 5, 3)
    order = torch.argsort(graph["image_index"], stable=True)
    position = torch.empty_like(order)
    position[order] = torch.arange(200)
    graph["node_costs"] = graph["node_costs"][order].double()
    graph["image_index"] = graph["image_index"][order]
    graph["edges"] = position[graph["edges"]]
    mask = torch.zeros(3, 5, dtype=torch.bool)
    mask[:, 1] = True
    before = {name: tensor.clone() for name, tensor in graph.items()}
    image_index = graph["image_index"]
    contract_parallel(
        graph["node_costs"], graph["edges"], graph["edge_costs"], image_index, 3,
        label_mask=mask, use_kernels=use_kernels,
    )  # fmt: skip
    for method in ("parallel", "sequential"):
        gpucops.solve_graph(**graph, method=method, label_mask=mask)
    for name, tensor in graph.items():
        assert torch.equal(tensor, before[name]), name
    assert mask.sum() == 3
