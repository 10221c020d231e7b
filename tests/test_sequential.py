"""The sequential reference greedy (Algorithm 2): hand cases, brute force, properties."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gpucops
from gpucops.sequential import contract_sequential
from gpucops.synthetic import make_problem
from tests.reference import brute_force_optimum, multicut_objective, naive_objective


def solve_graph(node_costs, edges, edge_costs, partitionable, **kwargs):
    return gpucops.solve_graph(
        torch.tensor(node_costs, dtype=torch.float64),
        torch.tensor(edges, dtype=torch.long).view(-1, 2),
        torch.tensor(edge_costs, dtype=torch.float64),
        torch.tensor(partitionable),
        method="sequential",
        **kwargs,
    )


# ---------------------------------------------------------------- hand-made cases with known steps


def test_merge_changes_the_class_and_blocks_the_next_merge():
    # t(0,1) = 3 − min(0+1, 2+0) = 2 beats t(1,2) = 0.5; after it, cluster {0,1} has costs (1, 2)
    # and t({0,1},2) = 0.5 − min((1−1)+(1−0), (2−1)+0) = −0.5, so the greedy stops there.
    lab = solve_graph([[0, 2], [1, 0], [1, 0]], [[0, 1], [1, 2]], [3.0, 0.5], [True, True])
    assert lab.classes.tolist() == [0, 0, 1]
    assert lab.clusters.tolist() == [0, 0, 1]
    assert lab.objective.tolist() == [1.5]
    assert lab.info["merges"] == 1


def test_merge_raises_the_score_of_an_untouched_edge():
    # A = (0, 20, 20), B = (0, -15, 10), h = (10, 0, 10). t(A,B) = 16 − min(15, 20, 45) = 1 merges
    # first (t(A,h) = 7 − min(10, 20, 30) = −3). AB = (0, 5, 30) keeps class 0 but its margin at
    # class 1 drops to 5, so t(AB,h) = 7 − min(10, 5, 40) = 2 > 0: h joins, and the whole cluster
    # (10, 5, 40) takes class 1. Only re-scoring A's untouched edge to h finds this.
    lab = solve_graph(
        [[0, 20, 20], [0, -15, 10], [10, 0, 10]], [[0, 1], [0, 2]], [16, 7], [True, True, True]
    )
    assert lab.clusters.tolist() == [0, 0, 0]
    assert lab.classes.tolist() == [1, 1, 1]
    assert lab.objective.item() == 5


def test_merge_lowers_the_score_of_an_untouched_edge():
    # A = (0, 3, 20), B = (0, 10, 20), h = (10, 0, 10). t(A,B) = 4 (same class) beats
    # t(A,h) = 5 − min(10, 3, 30) = 2. AB = (0, 13, 40) raises the margin at class 1, so
    # t(AB,h) = 5 − min(10, 13, 50) = −5 and h stays apart.
    lab = solve_graph(
        [[0, 3, 20], [0, 10, 20], [10, 0, 10]], [[0, 1], [0, 2]], [4, 5], [True, True, True]
    )
    assert lab.clusters.tolist() == [0, 0, 1]
    assert lab.classes.tolist() == [0, 0, 1]
    assert lab.objective.item() == 5


@pytest.mark.parametrize("first", [0, 1])
def test_ties_go_to_the_lowest_edge_id(first):
    # t = 1 on both positive edges; whichever merges first makes the other one's sum 1 − 5 < 0.
    pairs = [[0, 1], [1, 2]]
    edges = [pairs[first], pairs[1 - first], [0, 2]]
    lab = solve_graph([[0.0]] * 3, edges, [1.0, 1.0, -5.0], [True])
    merged = set(pairs[first])
    clusters = lab.clusters.tolist()
    assert clusters[min(merged)] == clusters[max(merged)]
    assert len(set(clusters)) == 2


def test_parallel_edges_are_summed_on_contraction():
    # after {0,1} merge, their edges to 2 sum to 0.5 − 0.8 < 0: node 2 stays alone (on its own
    # the 0.5 edge would have merged it)
    lab = solve_graph([[0.0]] * 3, [[0, 1], [0, 2], [1, 2]], [2.0, 0.5, -0.8], [True])
    assert lab.clusters.tolist() == [0, 0, 1]


def test_a_summed_edge_takes_the_lowest_id_for_ties():
    # (0,1) merges first (t = 5). Its edges to 2 sum to 1 + 0 = 1 with id min(2, 0) = 0, which
    # then wins the tie against (2,3) (t = 1, id 1): {0,1,2} forms and (2,3) + (0,3) = −0.5 stops.
    edges = [[1, 2], [2, 3], [0, 2], [0, 1], [0, 3]]
    lab = solve_graph([[0.0]] * 4, edges, [0, 1, 1, 5, -1.5], [True])
    assert lab.clusters.tolist() == [0, 0, 0, 1]


def test_duplicate_input_edges_are_summed():
    lab = solve_graph([[0.0]] * 2, [[0, 1], [1, 0]], [0.4, -1.0], [True])
    assert lab.clusters.tolist() == [0, 1]
    assert lab.objective.item() == pytest.approx(-0.6)
    lab = solve_graph([[0.0]] * 2, [[0, 1], [1, 0]], [0.4, 1.0], [True])
    assert lab.clusters.tolist() == [0, 0]


def test_zero_score_never_merges():
    lab = solve_graph([[0.0]] * 3, [[0, 1], [1, 2]], [0.0, 0.0], [True])
    assert lab.clusters.tolist() == [0, 1, 2]
    assert lab.info["merges"] == 0


def test_stuff_clusters_merge_per_class_thing_clusters_stay_apart():
    # class 0 stuff, class 1 thing; path 0-1-2-3-4 with conflicts at both ends
    node_costs = [[0, 5], [5, 0], [5, 0], [5, 0], [0, 5]]
    lab = solve_graph(node_costs, [[0, 1], [1, 2], [2, 3], [3, 4]], [1, -1, 1, 1], [False, True])
    assert lab.classes.tolist() == [0, 1, 1, 1, 0]
    # nodes 0 and 4 never touch but share the stuff class: one segment, numbered first
    assert lab.clusters.tolist() == [0, 1, 2, 2, 0]
    assert lab.objective.item() == pytest.approx(0 + 1 - 1 + 1)


def test_label_mask_forbids_classes_per_image():
    node_costs = torch.tensor([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]])
    mask = torch.tensor([[True, False, False], [False, False, False]])
    lab = gpucops.solve_graph(
        node_costs,
        torch.zeros(0, 2, dtype=torch.long),
        torch.zeros(0),
        torch.tensor([True] * 3),
        image_index=torch.tensor([0, 1]),
        method="sequential",
        label_mask=mask,
    )
    assert lab.classes.tolist() == [1, 0]


# ----------------------------------------------------------------------------- random small graphs


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


@given(small_graphs())
def test_never_better_than_the_brute_force_optimum(graph):
    node_costs, edges, edge_costs, partitionable = graph
    lab = solve_graph(*graph)
    optimum = brute_force_optimum(node_costs, edges, edge_costs, partitionable)
    assert lab.objective.item() >= optimum - 1e-9


def test_reaches_the_optimum_on_a_seven_node_case():
    # two attractive groups of one thing class, and a stuff node between them
    node_costs = [[0, 1]] * 3 + [[1, 0]] + [[0, 1]] * 3
    edges = [[0, 1], [1, 2], [0, 2], [2, 3], [3, 4], [4, 5], [5, 6], [4, 6], [2, 4]]
    edge_costs = [2, 2, 1, 0.5, 0.5, 2, 2, 1, -3]
    partitionable = [True, False]
    lab = solve_graph(node_costs, edges, edge_costs, partitionable)
    assert lab.objective.item() == pytest.approx(
        brute_force_optimum(node_costs, edges, edge_costs, partitionable)
    )


@given(small_graphs(max_nodes=8, max_classes=4))
def test_output_is_feasible_and_objectives_agree(graph):
    node_costs, edges, edge_costs, partitionable = graph
    lab = solve_graph(*graph)
    classes, clusters = lab.classes.tolist(), lab.clusters.tolist()
    segment_class = {}
    for c, s in zip(classes, clusters, strict=True):
        assert segment_class.setdefault(s, c) == c  # one class per segment
    stuff_segments = {}
    for s, c in segment_class.items():
        if not partitionable[c]:
            assert stuff_segments.setdefault(c, s) == s  # one segment per stuff class
    # compact ids, numbered by first node
    first_seen = list(dict.fromkeys(clusters))
    assert first_seen == list(range(len(first_seen)))
    expected = naive_objective(node_costs, edges, edge_costs, partitionable, classes, clusters)
    assert lab.objective.item() == pytest.approx(expected, abs=1e-9)


@given(small_graphs(max_nodes=8, max_classes=4))
def test_multicut_objective_before_stuff_merge_never_exceeds_trivial(graph):
    node_costs, edges, edge_costs, _ = graph
    n = len(node_costs)
    classes, clusters, _ = contract_sequential(
        torch.tensor(node_costs, dtype=torch.float64),
        torch.tensor(edges, dtype=torch.long).view(-1, 2),
        torch.tensor(edge_costs, dtype=torch.float64),
        torch.zeros(n, dtype=torch.long),
    )
    trivial_classes = torch.tensor(node_costs).argmin(dim=1).tolist()
    trivial = multicut_objective(node_costs, edges, edge_costs, trivial_classes, list(range(n)))
    solved = multicut_objective(node_costs, edges, edge_costs, classes.tolist(), clusters.tolist())
    assert solved <= trivial + 1e-9
    # every cluster carries the argmin class of its summed costs (lowest class on ties)
    for cluster in set(clusters.tolist()):
        members = (clusters == cluster).nonzero().flatten()
        summed = torch.tensor(node_costs, dtype=torch.float64)[members].sum(dim=0)
        assert (classes[members] == int(summed.argmin())).all()


# ---------------------------------------------------------------------------- synthetic grids


@given(
    seed=st.integers(0, 10_000),
    batch=st.integers(1, 3),
    height=st.integers(4, 16),
    width=st.integers(4, 16),
    num_classes=st.sampled_from([2, 5, 19]),
)
def test_grid_batch_equals_single_solves_and_is_deterministic(
    seed, batch, height, width, num_classes
):
    p = make_problem(batch, height, width, num_classes, distances=(1, 2, 3), seed=seed)
    lab = gpucops.solve(
        p.node_costs, p.edge_costs, p.partitionable, p.distances, method="sequential"
    )
    again = gpucops.solve(
        p.node_costs, p.edge_costs, p.partitionable, p.distances, method="sequential"
    )
    assert torch.equal(lab.classes, again.classes) and torch.equal(lab.segments, again.segments)
    assert torch.equal(lab.objective, again.objective)
    reported = gpucops.objective(
        p.node_costs, p.edge_costs, p.partitionable, lab.classes, lab.segments, p.distances
    )
    torch.testing.assert_close(lab.objective, reported, rtol=1e-12, atol=1e-9)
    for b in range(batch):
        one = gpucops.solve(
            p.node_costs[b : b + 1],
            p.edge_costs[b : b + 1],
            p.partitionable,
            p.distances,
            method="sequential",
        )
        assert torch.equal(one.classes[0], lab.classes[b])
        assert torch.equal(one.segments[0], lab.segments[b])
        assert one.objective.item() == lab.objective[b].item()


def test_graph_batch_with_unsorted_images_equals_single_solves():
    p = make_problem(2, 10, 12, 5, distances=(1, 2, 4), seed=7)
    nodes, edges, costs, image_index = gpucops.grid_to_graph(
        p.node_costs, p.edge_costs, p.distances
    )
    # interleave the two images' nodes: new position of old node i
    n = nodes.shape[0]
    order = torch.argsort(torch.arange(n) % (n // 2) * 2 + image_index)
    position = torch.empty_like(order)
    position[order] = torch.arange(n)
    lab = gpucops.solve_graph(
        nodes[order],
        position[edges],
        costs,
        p.partitionable,
        image_index=image_index[order],
        method="sequential",
    )
    grid = gpucops.solve(
        p.node_costs, p.edge_costs, p.partitionable, p.distances, method="sequential"
    )
    assert torch.equal(lab.classes[position].view(2, 10, 12), grid.classes)
    # segment ids are numbered by first node, which the interleaving preserves within an image
    assert torch.equal(lab.clusters[position].view(2, 10, 12), grid.segments)
    torch.testing.assert_close(lab.objective, grid.objective, rtol=1e-12, atol=1e-9)


def test_solved_synthetic_scene_beats_the_trivial_labeling():
    p = make_problem(1, 32, 64, 19, distances=(1, 4, 16, 32), seed=1)
    lab = gpucops.solve(
        p.node_costs, p.edge_costs, p.partitionable, p.distances, method="sequential"
    )
    trivial = gpucops.objective(
        p.node_costs,
        p.edge_costs,
        p.partitionable,
        p.node_costs.argmin(dim=1),
        torch.arange(32 * 64).view(1, 32, 64),
        p.distances,
    )
    assert lab.objective.item() < trivial.item()
    assert (lab.classes == p.classes).double().mean() > (
        p.node_costs.argmin(1) == p.classes
    ).double().mean()


@pytest.mark.parametrize(("num_classes", "seed"), [(19, 0), (19, 1), (5, 2), (133, 3)])
def test_skipping_provably_unchanged_scores_changes_nothing(num_classes, seed):
    p = make_problem(2, 24, 40, num_classes, distances=(1, 4, 16), seed=seed)
    nodes, edges, costs, image_index = gpucops.grid_to_graph(
        p.node_costs, p.edge_costs, p.distances
    )
    fast = contract_sequential(nodes, edges, costs, image_index)
    plain = contract_sequential(nodes, edges, costs, image_index, rescore_all=True)
    assert torch.equal(fast[0], plain[0]) and torch.equal(fast[1], plain[1]) and fast[2] == plain[2]
