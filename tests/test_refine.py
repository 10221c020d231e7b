"""Boundary refinement: the objective never rises, the result is a local optimum of single-node
moves (checked by brute force against the objective's definition), host kernels = torch."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import gpucops
from gpucops.contraction_kernels import ContractionKernels
from gpucops.objective import trivial_objective
from gpucops.refine import refine_labeling
from gpucops.synthetic import make_problem
from tests.reference import naive_objective
from tests.strategies import labelled_graphs


def _refine(graph, kernels=None, rounds=100, change_classes=True):
    node_costs, edges, edge_costs, partitionable, classes, clusters = graph
    n = len(classes)
    return refine_labeling(
        torch.tensor(node_costs, dtype=torch.float64),
        torch.tensor(edges, dtype=torch.long).view(-1, 2),
        torch.tensor(edge_costs, dtype=torch.float64),
        torch.tensor(classes),
        torch.tensor(clusters),
        torch.tensor(partitionable),
        torch.zeros(n, dtype=torch.long),
        1,
        rounds,
        kernels,
        change_classes=change_classes,
    )


@settings(max_examples=60, deadline=None)
@given(labelled_graphs(max_nodes=8), st.booleans())
def test_moves_lower_the_objective_to_a_local_optimum(graph, change_classes):
    node_costs, edges, edge_costs, partitionable, classes, clusters = graph
    before = naive_objective(node_costs, edges, edge_costs, partitionable, classes, clusters)
    new_classes, keys, moves = _refine(graph, change_classes=change_classes)
    new_classes, keys = new_classes.tolist(), keys.tolist()
    after = naive_objective(node_costs, edges, edge_costs, partitionable, new_classes, keys)
    assert after <= before + 1e-9
    assert len(moves) < 100 and all(m > 0 for m in moves)
    # one class per segment; moves only enter existing segments
    assert len({(key, c) for key, c in zip(keys, new_classes, strict=True)}) == len(set(keys))
    if not change_classes:
        assert new_classes == classes
    # no single node can still improve by joining a neighbour's segment (by the definition),
    # among the segments of its own class unless classes may change
    for u in range(len(keys)):
        neighbours = {b if a == u else a for a, b in edges if u in (a, b)}
        for v in neighbours:
            if keys[v] == keys[u] or not (change_classes or new_classes[v] == new_classes[u]):
                continue
            moved_classes, moved_keys = list(new_classes), list(keys)
            moved_classes[u], moved_keys[u] = new_classes[v], keys[v]
            moved = naive_objective(node_costs, edges, edge_costs, partitionable, moved_classes,
                                    moved_keys)  # fmt: skip
            assert moved >= after - 1e-9, (u, v)


@settings(max_examples=30, deadline=None)
@given(labelled_graphs(max_nodes=10), st.booleans())
def test_host_kernels_refine_as_the_torch_steps(graph, change_classes):
    host = ContractionKernels(torch.device("cpu"))
    got_all = _refine(graph, host, change_classes=change_classes)
    for got, expected in zip(got_all, _refine(graph, change_classes=change_classes), strict=True):
        assert got == expected if isinstance(got, list) else torch.equal(got, expected)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_refined_parallel_solver_reaches_the_sequential_greedy(seed):
    p = make_problem(2, 40, 64, 19, distances=(1, 4, 16, 32), seed=seed)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    trivial = trivial_objective(*args)
    sequential = gpucops.solve(*args, method="sequential").objective
    plain = gpucops.solve(*args)
    assert "refine_moves" not in plain.info  # off by default
    refined = gpucops.solve(*args, refine=20, refine_classes=True)
    assert (refined.objective <= plain.objective + 1e-9).all()
    assert sum(refined.info["refine_moves"]) > 0
    quality = (trivial - refined.objective) / (trivial - sequential)
    assert (quality >= 0.995).all(), quality
    # the reported objective is the objective of the returned labeling
    check = gpucops.objective(*args[:3], refined.classes, refined.segments, p.distances)
    torch.testing.assert_close(check, refined.objective)
    # by default the moves stay within each thing class: the semantic labeling is the plain one
    # (here after the plain rounds, which leave more such moves than the default's tiles)
    rounds = {"tile": 0, "top_fraction": None}
    plain = gpucops.solve(*args, **rounds)
    within = gpucops.solve(*args, refine=20, **rounds)
    assert torch.equal(within.classes, plain.classes)
    assert (within.objective <= plain.objective + 1e-9).all()
    if seed == 0:  # seeds 1 and 2 have no improving move within a class
        assert sum(within.info["refine_moves"]) > 0
        assert (within.objective < plain.objective).any()


@pytest.mark.parametrize(
    ("option", "bad"),
    [("refine", -1), ("refine", 1.5), ("refine", True), ("refine", "3"),
     ("refine_classes", 1), ("refine_classes", "yes"), ("free_leaves", None)],
)  # fmt: skip
def test_refine_options_are_checked(option, bad):
    p = make_problem(1, 8, 8, 3, distances=(1,), seed=0)
    with pytest.raises(ValueError, match=option):
        gpucops.solve(p.node_costs, p.edge_costs, p.partitionable, p.distances, **{option: bad})


@pytest.mark.parametrize("change_classes", [False, True])
def test_image_by_image_equals_one_graph(change_classes):
    from gpucops.parallel import contract_parallel

    p = make_problem(3, 20, 28, 19, distances=(1, 4, 16), seed=2)  # moves in both variants
    nodes, edges, weights, image_index = gpucops.grid_to_graph(
        p.node_costs, p.edge_costs, p.distances
    )
    # images interleaved, as solve_graph allows
    order = torch.randperm(nodes.shape[0], generator=torch.Generator().manual_seed(0))
    position = torch.empty_like(order)
    position[order] = torch.arange(order.numel())
    nodes, image_index, edges = nodes[order], image_index[order], position[edges]
    result = contract_parallel(nodes, edges, weights, image_index, 3)
    args = (nodes.double(), edges, weights.double(), result.classes, result.clusters,
            p.partitionable, image_index, 3, 20)  # fmt: skip
    apart = refine_labeling(*args, split_images=True, change_classes=change_classes)
    together = refine_labeling(*args, split_images=False, change_classes=change_classes)
    assert sum(apart[2]) > 0
    for got, expected in zip(apart, together, strict=True):
        assert got == expected if isinstance(got, list) else torch.equal(got, expected)
