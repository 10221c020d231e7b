"""The batched parallel contraction: each step against a plain loop, then the whole solver's
invariants, its agreement with batches and its quality against the sequential reference."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gpucops
from gpucops.parallel import (
    checked_roots,
    cluster_classes,
    coin_is_centre,
    contract_parallel,
    pick_edges,
    score_edges,
    star_roots,
)
from gpucops.synthetic import make_problem
from tests.reference import brute_force_optimum, multicut_objective, naive_objective
from tests.test_sequential import small_graphs


def solve_graph(node_costs, edges, edge_costs, partitionable, **kwargs):
    return gpucops.solve_graph(
        torch.tensor(node_costs, dtype=torch.float64),
        torch.tensor(edges, dtype=torch.long).view(-1, 2),
        torch.tensor(edge_costs, dtype=torch.float64),
        torch.tensor(partitionable),
        method="parallel",
        **kwargs,
    )


# ------------------------------------------------------------------------- steps against loops


@given(seed=st.integers(0, 2**31), clusters=st.integers(2, 12), k=st.integers(1, 5))
def test_score_and_pick_match_plain_loops(seed, clusters, k):
    g = torch.Generator().manual_seed(seed)
    costs = torch.randint(-3, 4, (clusters, k), generator=g).double()
    pairs = torch.combinations(torch.arange(clusters), 2)
    edges = pairs[torch.randperm(pairs.shape[0], generator=g)[: 2 * clusters]]
    edges = edges[torch.argsort(edges[:, 0] * clusters + edges[:, 1])]
    weights = torch.randint(-3, 4, (edges.shape[0],), generator=g).double()
    minimum, argmin = cluster_classes(costs)
    for c in range(clusters):
        row = costs[c].tolist()
        assert minimum[c] == min(row) and argmin[c] == row.index(min(row))
    scores = score_edges(costs, minimum, argmin, edges, weights)
    for e, (u, v) in enumerate(edges.tolist()):
        if argmin[u] == argmin[v]:
            expected = weights[e].item()
        else:
            margins = [(costs[u, q] - minimum[u]) + (costs[v, q] - minimum[v]) for q in range(k)]
            expected = weights[e].item() - min(margins).item()
        assert scores[e].item() == expected
    picks = pick_edges(scores, edges, clusters)
    for c in range(clusters):
        incident = [
            (scores[e].item(), -e)
            for e, (u, v) in enumerate(edges.tolist())
            if c in (u, v) and scores[e] > 0
        ]
        assert picks[c].item() == (-max(incident)[1] if incident else -1)


def test_coin_is_deterministic_and_balanced():
    local = torch.arange(10_000)
    a, b = coin_is_centre(local, 3), coin_is_centre(local, 3)
    assert torch.equal(a, b)
    assert 0.45 < a.double().mean() < 0.55
    assert not torch.equal(a, coin_is_centre(local, 4))  # a new coin every round


@given(seed=st.integers(0, 2**31), clusters=st.integers(2, 15))
def test_star_roots_form_stars_of_depth_one(seed, clusters):
    g = torch.Generator().manual_seed(seed)
    pairs = torch.combinations(torch.arange(clusters), 2)
    edges = pairs[torch.randperm(pairs.shape[0], generator=g)[: 3 * clusters]]
    scores = torch.randn(edges.shape[0], generator=g, dtype=torch.float64)
    picks = pick_edges(scores, edges, clusters)
    centre = torch.rand(clusters, generator=g) < 0.5
    root = star_roots(picks, edges, scores, centre)
    ids = torch.arange(clusters)
    assert torch.equal(root[root], root)  # roots are their own roots
    for c in (root != ids).nonzero().flatten().tolist():
        r = root[c].item()
        e = picks[c].item()
        assert e >= 0 and set(edges[e].tolist()) == {c, r}  # joined along its own pick
        # a leaf into a centre, or a mutual pair with the lower index as root
        assert (not centre[c] and centre[r]) or (picks[r] == e and r < c)


@pytest.mark.parametrize(("leaf_conflict", "expected"), [(-10.0, [0, 0, 2]), (-0.5, [0, 0, 0])])
def test_star_check_shrinks_a_star_that_would_raise_the_objective(leaf_conflict, expected):
    # leaves 1 and 2 both picked centre 0 (t = 2 and 1); their own edge costs leaf_conflict.
    # Merging all three costs −(2 + 1 + leaf_conflict): with −10 that is +7, so the star shrinks
    # to its best leaf (1); with −0.5 it is −2.5 and the star stands.
    costs = torch.zeros(3, 1, dtype=torch.float64)
    edges = torch.tensor([[0, 1], [0, 2], [1, 2]])
    weights = torch.tensor([2.0, 1.0, leaf_conflict], dtype=torch.float64)
    minimum, argmin = cluster_classes(costs)
    scores = score_edges(costs, minimum, argmin, edges, weights)
    picks = torch.tensor([0, 0, 1])
    root = torch.tensor([0, 0, 0])
    checked = checked_roots(root, picks, scores, costs, minimum, edges, weights)
    assert checked.tolist() == expected


# ----------------------------------------------------------------------- the whole solver


@given(small_graphs())
def test_never_better_than_the_brute_force_optimum(graph):
    lab = solve_graph(*graph)
    assert lab.objective.item() >= brute_force_optimum(*graph) - 1e-9


@given(small_graphs(max_nodes=10, max_classes=4))
def test_output_is_feasible_and_objectives_agree(graph):
    node_costs, edges, edge_costs, partitionable = graph
    lab = solve_graph(*graph)
    classes, clusters = lab.classes.tolist(), lab.clusters.tolist()
    segment_class = {}
    for c, s in zip(classes, clusters, strict=True):
        assert segment_class.setdefault(s, c) == c
    stuff = [c for c in segment_class.values() if not partitionable[c]]
    assert len(stuff) == len(set(stuff))  # one segment per stuff class
    expected = naive_objective(node_costs, edges, edge_costs, partitionable, classes, clusters)
    assert lab.objective.item() == pytest.approx(expected, abs=1e-9)


@given(small_graphs(max_nodes=10, max_classes=4), st.sampled_from([None, 0.0, 0.5]))
def test_multicut_objective_before_stuff_merge_never_exceeds_trivial(graph, epsilon):
    node_costs, edges, edge_costs, _ = graph
    n = len(node_costs)
    result = contract_parallel(
        torch.tensor(node_costs, dtype=torch.float64),
        torch.tensor(edges, dtype=torch.long).view(-1, 2),
        torch.tensor(edge_costs, dtype=torch.float64),
        torch.zeros(n, dtype=torch.long),
        1,
        epsilon=epsilon,
    )
    classes, clusters = result.classes.tolist(), result.clusters.tolist()
    trivial_classes = torch.tensor(node_costs).argmin(dim=1).tolist()
    trivial = multicut_objective(node_costs, edges, edge_costs, trivial_classes, list(range(n)))
    assert multicut_objective(node_costs, edges, edge_costs, classes, clusters) <= trivial + 1e-9
    for cluster in set(clusters):  # every cluster takes the argmin of its summed costs
        members = [i for i in range(n) if clusters[i] == cluster]
        summed = torch.tensor(node_costs, dtype=torch.float64)[members].sum(dim=0)
        assert {classes[i] for i in members} == {int(summed.argmin())}


def test_label_mask_forbids_classes_per_image():
    node_costs = torch.tensor([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0], [0.0, 3.0, 1.0]])
    mask = torch.tensor([[True, False, False], [True, True, False]])
    lab = gpucops.solve_graph(
        node_costs,
        torch.tensor([[0, 1]]),
        torch.tensor([5.0]),
        torch.tensor([True] * 3),
        image_index=torch.tensor([0, 0, 1]),
        label_mask=mask,
    )
    assert lab.classes.tolist() == [1, 1, 2]
    assert lab.clusters.tolist() == [0, 0, 0]


@given(
    seed=st.integers(0, 10_000),
    batch=st.integers(1, 3),
    height=st.integers(4, 16),
    width=st.integers(4, 16),
    num_classes=st.sampled_from([2, 5, 19]),
    epsilon=st.sampled_from([None, 0.5]),
)
def test_grid_batch_equals_single_solves_and_is_deterministic(
    seed, batch, height, width, num_classes, epsilon
):
    p = make_problem(batch, height, width, num_classes, distances=(1, 2, 3), seed=seed)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    lab = gpucops.solve(*args, epsilon=epsilon)
    again = gpucops.solve(*args, epsilon=epsilon)
    assert torch.equal(lab.classes, again.classes) and torch.equal(lab.segments, again.segments)
    reported = gpucops.objective(*args[:3], lab.classes, lab.segments, p.distances)
    torch.testing.assert_close(lab.objective, reported, rtol=1e-12, atol=1e-9)
    for b in range(batch):
        one = gpucops.solve(
            p.node_costs[b : b + 1], p.edge_costs[b : b + 1], *args[2:], epsilon=epsilon
        )
        assert torch.equal(one.classes[0], lab.classes[b])
        assert torch.equal(one.segments[0], lab.segments[b])


def test_graph_batch_with_unsorted_images_equals_the_grid_solve():
    p = make_problem(2, 10, 12, 5, distances=(1, 2, 4), seed=7)
    nodes, edges, costs, image_index = gpucops.grid_to_graph(
        p.node_costs, p.edge_costs, p.distances
    )
    n = nodes.shape[0]
    order = torch.argsort(torch.arange(n) % (n // 2) * 2 + image_index)
    position = torch.empty_like(order)
    position[order] = torch.arange(n)
    lab = gpucops.solve_graph(
        nodes[order], position[edges], costs, p.partitionable, image_index=image_index[order]
    )
    grid = gpucops.solve(p.node_costs, p.edge_costs, p.partitionable, p.distances)
    assert torch.equal(lab.classes[position].view(2, 10, 12), grid.classes)
    assert torch.equal(lab.clusters[position].view(2, 10, 12), grid.segments)


@pytest.mark.parametrize(("num_classes", "seed"), [(19, 0), (19, 1), (133, 2)])
def test_quality_close_to_the_sequential_reference(num_classes, seed):
    p = make_problem(1, 48, 96, num_classes, distances=(1, 4, 16, 32), seed=seed)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    singletons = torch.arange(48 * 96).view(1, 48, 96)
    trivial = gpucops.objective(*args[:3], p.node_costs.argmin(dim=1), singletons, p.distances)
    sequential = gpucops.solve(*args, method="sequential").objective
    parallel = gpucops.solve(*args, epsilon=0.5)
    ratio = ((trivial - parallel.objective) / (trivial - sequential)).item()
    assert ratio > 0.98, ratio
    assert parallel.info["rounds"] < 200
