"""Boundary refinement (``gpucops.refine``, a post-step): the objective never rises, the result is
a local optimum of single-node moves within each thing class (checked by brute force against the
objective's definition), host kernels = torch, image by image = one graph."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings

import gpucops
from gpucops.solver.backend import KernelSteps
from gpucops.solver.moves import refine_labeling
from gpucops.solver.steps import TorchSteps
from gpucops.synthetic import make_problem
from tests.contraction import contract
from tests.reference import naive_objective
from tests.strategies import labelled_graphs


def _refine(graph, steps=None, rounds=100):
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
        steps or TorchSteps(),
    )


@settings(max_examples=60, deadline=None)
@given(labelled_graphs(max_nodes=8))
def test_moves_lower_the_objective_to_a_local_optimum(graph):
    node_costs, edges, edge_costs, partitionable, classes, clusters = graph
    before = naive_objective(node_costs, edges, edge_costs, partitionable, classes, clusters)
    new_classes, keys, moves = _refine(graph)
    new_classes, keys = new_classes.tolist(), keys.tolist()
    after = naive_objective(node_costs, edges, edge_costs, partitionable, new_classes, keys)
    assert after <= before + 1e-9
    assert len(moves) < 100 and all(m > 0 for m in moves)
    # one class per segment; moves only enter existing segments
    assert len({(key, c) for key, c in zip(keys, new_classes, strict=True)}) == len(set(keys))
    assert new_classes == classes
    # no single node can still improve by joining a neighbouring segment of its own thing class
    # (by the definition)
    for u in range(len(keys)):
        neighbours = {b if a == u else a for a, b in edges if u in (a, b)}
        for v in neighbours:
            same = new_classes[v] == new_classes[u] and partitionable[new_classes[u]]
            if keys[v] == keys[u] or not same:
                continue
            moved_classes, moved_keys = list(new_classes), list(keys)
            moved_classes[u], moved_keys[u] = new_classes[v], keys[v]
            moved = naive_objective(node_costs, edges, edge_costs, partitionable, moved_classes,
                                    moved_keys)  # fmt: skip
            assert moved >= after - 1e-9, (u, v)


@settings(max_examples=30, deadline=None)
@given(labelled_graphs(max_nodes=10))
def test_host_kernels_refine_as_the_torch_steps(graph):
    got_all = _refine(graph, KernelSteps(torch.device("cpu")))
    for got, expected in zip(got_all, _refine(graph), strict=True):
        assert got == expected if isinstance(got, list) else torch.equal(got, expected)


def test_refine_after_a_solve_keeps_the_classes_and_lowers_the_objective():
    p = make_problem(2, 40, 64, 19, distances=(1, 4, 16, 32), seed=0)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    plain = gpucops.solve(*args, tile=0, top_fraction=None)  # leaves moves for the refinement
    refined = gpucops.refine(plain, *args)
    assert torch.equal(refined.classes, plain.classes)
    assert (refined.objective <= plain.objective).all()
    assert (refined.objective < plain.objective).any() and sum(refined.info["refine_moves"]) > 0
    # the reported objective is the objective of the returned labeling (an independent form)
    check = gpucops.objective(*args[:3], refined.classes, refined.segments, p.distances)
    torch.testing.assert_close(check, refined.objective)
    # a batch refines as its images alone
    for b in range(2):
        one = gpucops.refine(
            gpucops.solve(*(a[b : b + 1] for a in args[:2]), *args[2:], tile=0, top_fraction=None),
            *(a[b : b + 1] for a in args[:2]), *args[2:],
        )  # fmt: skip
        assert torch.equal(one.segments[0], refined.segments[b])
        assert one.objective.item() == refined.objective[b].item()


@pytest.mark.parametrize(("bad", "message"), [(-1, "rounds"), (1.5, "rounds"), (True, "rounds")])
def test_refine_options_are_checked(bad, message):
    p = make_problem(1, 8, 8, 3, distances=(1,), seed=0)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    with pytest.raises(ValueError, match=message):
        gpucops.refine(gpucops.solve(*args), *args, rounds=bad)


def test_image_by_image_equals_one_graph():
    p = make_problem(3, 20, 28, 19, distances=(1, 4, 16), seed=2)  # moves in both variants
    nodes, edges, weights, image_index = gpucops.grid_to_graph(
        p.node_costs, p.edge_costs, p.distances
    )
    # images interleaved, as solve_graph allows
    order = torch.randperm(nodes.shape[0], generator=torch.Generator().manual_seed(0))
    position = torch.empty_like(order)
    position[order] = torch.arange(order.numel())
    nodes, image_index, edges = nodes[order], image_index[order], position[edges]
    result = contract(nodes, edges, weights, image_index, 3, top_fraction=None, tail=0)
    args = (nodes.double(), edges, weights.double(), result.classes, result.clusters,
            p.partitionable, image_index, 3, 20, TorchSteps())  # fmt: skip
    apart = refine_labeling(*args, split_images=True)
    together = refine_labeling(*args, split_images=False)
    assert sum(apart[2]) > 0
    for got, expected in zip(apart, together, strict=True):
        assert got == expected if isinstance(got, list) else torch.equal(got, expected)


def test_refine_honours_the_label_mask():
    p = make_problem(2, 24, 32, 19, distances=(1, 4, 16), seed=3)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    mask = torch.zeros(2, 19, dtype=torch.bool)
    mask[0, 11:] = True  # image 0: no thing class (11–18 are Cityscapes' things)
    plain = gpucops.solve(*args, tile=0, top_fraction=None, label_mask=mask)
    refined = gpucops.refine(plain, *args, label_mask=mask)
    assert not mask[0][refined.classes[0]].any()
    assert torch.equal(refined.classes, plain.classes)
    check = gpucops.objective(*args[:3], refined.classes, refined.segments, p.distances)
    torch.testing.assert_close(check, refined.objective)
    assert (refined.objective <= plain.objective).all()
    with pytest.raises(ValueError, match="label_mask"):
        gpucops.refine(plain, *args, label_mask=mask[:1])
