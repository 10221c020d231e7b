"""The sequential reference greedy (Algorithm 2): hand cases with known steps, brute force, the
re-scoring skip (the invariants shared with the parallel solver are in test_solvers)."""

from __future__ import annotations

import pytest
import torch

import gpucops
from gpucops.solver.sequential import contract_sequential
from gpucops.synthetic import make_problem
from tests.reference import brute_force_optimum


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
    assert lab.segments.tolist() == [0, 0, 1]
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
    assert lab.segments.tolist() == [0, 0, 0]
    assert lab.classes.tolist() == [1, 1, 1]
    assert lab.objective.item() == 5


def test_merge_lowers_the_score_of_an_untouched_edge():
    # A = (0, 3, 20), B = (0, 10, 20), h = (10, 0, 10). t(A,B) = 4 (same class) beats
    # t(A,h) = 5 − min(10, 3, 30) = 2. AB = (0, 13, 40) raises the margin at class 1, so
    # t(AB,h) = 5 − min(10, 13, 50) = −5 and h stays apart.
    lab = solve_graph(
        [[0, 3, 20], [0, 10, 20], [10, 0, 10]], [[0, 1], [0, 2]], [4, 5], [True, True, True]
    )
    assert lab.segments.tolist() == [0, 0, 1]
    assert lab.classes.tolist() == [0, 0, 1]
    assert lab.objective.item() == 5


@pytest.mark.parametrize("first", [0, 1])
def test_ties_go_to_the_lowest_edge_id(first):
    # t = 1 on both positive edges; whichever merges first makes the other one's sum 1 − 5 < 0.
    pairs = [[0, 1], [1, 2]]
    edges = [pairs[first], pairs[1 - first], [0, 2]]
    lab = solve_graph([[0.0]] * 3, edges, [1.0, 1.0, -5.0], [True])
    merged = set(pairs[first])
    clusters = lab.segments.tolist()
    assert clusters[min(merged)] == clusters[max(merged)]
    assert len(set(clusters)) == 2


def test_parallel_edges_are_summed_on_contraction():
    # after {0,1} merge, their edges to 2 sum to 0.5 − 0.8 < 0: node 2 stays alone (on its own
    # the 0.5 edge would have merged it)
    lab = solve_graph([[0.0]] * 3, [[0, 1], [0, 2], [1, 2]], [2.0, 0.5, -0.8], [True])
    assert lab.segments.tolist() == [0, 0, 1]


def test_a_summed_edge_takes_the_lowest_id_for_ties():
    # (0,1) merges first (t = 5). Its edges to 2 sum to 1 + 0 = 1 with id min(2, 0) = 0, which
    # then wins the tie against (2,3) (t = 1, id 1): {0,1,2} forms and (2,3) + (0,3) = −0.5 stops.
    edges = [[1, 2], [2, 3], [0, 2], [0, 1], [0, 3]]
    lab = solve_graph([[0.0]] * 4, edges, [0, 1, 1, 5, -1.5], [True])
    assert lab.segments.tolist() == [0, 0, 0, 1]


def test_duplicate_input_edges_are_summed():
    lab = solve_graph([[0.0]] * 2, [[0, 1], [1, 0]], [0.4, -1.0], [True])
    assert lab.segments.tolist() == [0, 1]
    assert lab.objective.item() == pytest.approx(-0.6)
    lab = solve_graph([[0.0]] * 2, [[0, 1], [1, 0]], [0.4, 1.0], [True])
    assert lab.segments.tolist() == [0, 0]


def test_zero_score_never_merges():
    lab = solve_graph([[0.0]] * 3, [[0, 1], [1, 2]], [0.0, 0.0], [True])
    assert lab.segments.tolist() == [0, 1, 2]
    assert lab.info["merges"] == 0


def test_stuff_clusters_merge_per_class_thing_clusters_stay_apart():
    # class 0 stuff, class 1 thing; path 0-1-2-3-4 with conflicts at both ends
    node_costs = [[0, 5], [5, 0], [5, 0], [5, 0], [0, 5]]
    lab = solve_graph(node_costs, [[0, 1], [1, 2], [2, 3], [3, 4]], [1, -1, 1, 1], [False, True])
    assert lab.classes.tolist() == [0, 1, 1, 1, 0]
    # nodes 0 and 4 never touch but share the stuff class: one segment, numbered first
    assert lab.segments.tolist() == [0, 1, 2, 2, 0]
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


# ---------------------------------------------------------------------------- synthetic grids


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
