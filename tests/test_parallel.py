"""The batched parallel contraction: each step against a plain loop, the star check, and the
quality against the sequential reference (the invariants shared with it are in test_solvers)."""

from __future__ import annotations

import math

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
    threshold_scores,
    top_fraction_scores,
)
from gpucops.synthetic import make_problem
from tests.strategies import random_round

# ------------------------------------------------------------------------- steps against loops


@given(seed=st.integers(0, 2**31), clusters=st.integers(2, 12), k=st.integers(1, 5))
def test_score_and_pick_match_plain_loops(seed, clusters, k):
    costs, edges, weights = random_round(seed, clusters, k, masked=False)
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


@given(seed=st.integers(0, 2**31), clusters=st.integers(2, 15), free_leaves=st.booleans())
def test_star_roots_form_stars_of_depth_one(seed, clusters, free_leaves):
    g = torch.Generator().manual_seed(seed)
    pairs = torch.combinations(torch.arange(clusters), 2)
    edges = pairs[torch.randperm(pairs.shape[0], generator=g)[: 3 * clusters]]
    scores = torch.randn(edges.shape[0], generator=g, dtype=torch.float64)
    picks = pick_edges(scores, edges, clusters)
    centre = torch.rand(clusters, generator=g) < 0.5
    root = star_roots(picks, edges, scores, centre, free_leaves=free_leaves)
    coin_only = star_roots(picks, edges, scores, centre)
    ids = torch.arange(clusters)
    assert torch.equal(root[root], root)  # roots are their own roots
    picked = {edges[e].tolist()[0] + edges[e].tolist()[1] - c for c, e in enumerate(picks.tolist())
              if e >= 0}  # fmt: skip
    for c in (root != ids).nonzero().flatten().tolist():
        r = root[c].item()
        e = picks[c].item()
        assert e >= 0 and set(edges[e].tolist()) == {c, r}  # joined along its own pick
        # a leaf into a centre, a mutual pair with the lower index as root, or (free leaves) a
        # cluster nobody picked, alone under the coin, into a root of the coin's stars
        assert (
            (not centre[c] and centre[r])
            or (picks[r] == e and r < c)
            or (free_leaves and c not in picked and coin_only[c] == c and coin_only[r] == r)
        )
    # free leaves only add merges: the coin's stars stay as they are
    kept = coin_only != ids
    assert torch.equal(root[kept], coin_only[kept])


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


def test_threshold_keeps_each_images_best_band():
    scores = torch.tensor([5.0, 2.0, 1.0, -1.0, 0.5, 0.4, 0.05], dtype=torch.float64)
    edge_image = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    kept = threshold_scores(scores, edge_image, 2, 0.3)
    # image 0: best 5, keep t ≥ 1.5; image 1: best 0.5, keep t ≥ 0.15 (per image, not global)
    assert kept.tolist() == [5.0, 2.0, 0.0, 0.0, 0.5, 0.4, 0.0]


def test_top_fraction_keeps_each_images_highest_share():
    scores = torch.tensor([5.0, 2.0, 1.0, -1.0, 3.0, 0.5, 0.4, 0.05, 0.0], dtype=torch.float64)
    edge_image = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1])
    # image 0: 4 positive scores, ⌈0.5 · 4⌉ = 2 stay (5, 3); image 1: 3 positive, 2 stay
    kept = top_fraction_scores(scores, edge_image, 2, 0.5)
    assert kept.tolist() == [5.0, 0.0, 0.0, 0.0, 3.0, 0.5, 0.4, 0.0, 0.0]
    # a tiny fraction still keeps each image's best edge; 1 keeps every positive score (the
    # others cannot be picked in any case)
    kept = top_fraction_scores(scores, edge_image, 2, 0.01)
    assert kept.tolist() == [5.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.0]
    kept = top_fraction_scores(scores, edge_image, 2, 1.0)
    assert torch.equal(kept, scores.clamp(min=0))


@given(
    seed=st.integers(0, 10_000),
    num_images=st.integers(1, 4),
    num_edges=st.integers(0, 40),
    fraction=st.floats(0.01, 1.0),
)
def test_top_fraction_equals_a_loop_over_images(seed, num_images, num_edges, fraction):
    g = torch.Generator().manual_seed(seed)
    edge_image = torch.randint(0, num_images, (num_edges,), generator=g).sort().values
    scores = torch.randint(-3, 4, (num_edges,), generator=g).double() / 2  # ties, no positives
    expected = []
    for image_scores in scores.split(torch.bincount(edge_image, minlength=num_images).tolist()):
        positive = sorted(image_scores[image_scores > 0].tolist(), reverse=True)
        if not positive:
            expected.append(image_scores)
            continue
        cut = positive[max(1, math.ceil(fraction * len(positive))) - 1]
        expected.append(torch.where(image_scores >= cut, image_scores, 0.0))
    kept = top_fraction_scores(scores, edge_image, num_images, fraction)
    assert torch.equal(kept, torch.cat(expected) if expected else scores)


# ----------------------------------------------------------------------- the whole solver


@pytest.mark.parametrize(("num_classes", "seed"), [(19, 0), (19, 1), (133, 2)])
def test_quality_close_to_the_sequential_reference(num_classes, seed):
    p = make_problem(1, 48, 96, num_classes, distances=(1, 4, 16, 32), seed=seed)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    singletons = torch.arange(48 * 96).view(1, 48, 96)
    trivial = gpucops.objective(*args[:3], p.node_costs.argmin(dim=1), singletons, p.distances)
    sequential = gpucops.solve(*args, method="sequential").objective

    def quality(**options):
        result = gpucops.solve(*args, **options)
        return ((trivial - result.objective) / (trivial - sequential)).item(), result.info["rounds"]

    # the default: the exact greedy inside 16×16 tiles first, then the rounds banded by top
    # fraction 0.3
    ratio, rounds = quality()
    tiles_ratio, _ = quality(top_fraction=None)
    plain_ratio, plain_rounds = quality(tile=0, top_fraction=None)
    assert ratio > 0.995 and rounds < 100, (ratio, rounds)
    assert 0.98 < plain_ratio < tiles_ratio < ratio, (plain_ratio, tiles_ratio, ratio)
    # the rounds alone, and their options: free leaves (the default) cut the rounds by a third or
    # more (about half here)
    coin_ratio, coin_rounds = quality(tile=0, top_fraction=None, free_leaves=False)
    assert coin_ratio > 0.98 and 3 * plain_rounds <= 2 * coin_rounds, (coin_rounds, plain_rounds)
    # merging in bands of the greedy order gets closer to the sequential greedy on these cases
    banded_ratio, _ = quality(tile=0, top_fraction=None, threshold=0.3)
    assert banded_ratio > plain_ratio, (plain_ratio, banded_ratio)
    banded_coin_ratio, _ = quality(tile=0, top_fraction=None, threshold=0.3, free_leaves=False)
    assert banded_coin_ratio > coin_ratio and banded_coin_ratio > 0.99, banded_coin_ratio
    # and so does letting only the top tenth of each round's scores merge
    top_ratio, _ = quality(tile=0, top_fraction=0.1)
    assert top_ratio > plain_ratio and top_ratio > 0.994, (plain_ratio, top_ratio)


@pytest.mark.parametrize("use_kernels", [True, False])
def test_edge_order_does_not_change_the_result(use_kernels):
    # sorted grid edges may skip the first coalescing; shuffled ones (and unsorted images) take it
    p = make_problem(2, 20, 28, 19, distances=(1, 4, 16), seed=5)
    nodes, edges, weights, image_index = gpucops.grid_to_graph(
        p.node_costs, p.edge_costs, p.distances, sort_edges=True
    )
    shuffle = torch.randperm(edges.shape[0], generator=torch.Generator().manual_seed(0))
    flipped = edges[shuffle].flip(1)
    # the images' nodes interleaved: image 1's node i placed after image 0's node i
    interleave = torch.arange(nodes.shape[0]).view(2, -1).t().flatten()
    place = torch.empty_like(interleave)
    place[interleave] = torch.arange(nodes.shape[0])
    runs = [  # (graph, coalesced)
        ((nodes, edges, weights, image_index), True),
        ((nodes, edges, weights, image_index), False),
        ((nodes, flipped, weights[shuffle], image_index), False),
        ((nodes[interleave], place[edges], weights, image_index[interleave]), False),
    ]
    first, *others, interleaved = [
        contract_parallel(*graph, 2, use_kernels=use_kernels, coalesced=coalesced)
        for graph, coalesced in runs
    ]
    for result in others:
        assert torch.equal(result.classes, first.classes)
        assert torch.equal(result.clusters, first.clusters)
    assert torch.equal(interleaved.classes[place], first.classes)
    assert torch.equal(interleaved.clusters[place], first.clusters)


@pytest.mark.parametrize(
    "options",
    [{}, {"epsilon": 0.5}, {"top_fraction": 0.2}, {"threshold": 0.2, "top_fraction": 0.5}],
)
def test_one_graph_of_many_images_equals_images_one_by_one(options):
    p = make_problem(3, 20, 28, 19, distances=(1, 4, 16), seed=11)
    nodes, edges, weights, image_index = gpucops.grid_to_graph(
        p.node_costs, p.edge_costs, p.distances
    )
    args = (nodes, edges, weights, image_index, 3)
    together = contract_parallel(*args, split_images=False, **options)
    apart = contract_parallel(*args, split_images=True, **options)
    assert torch.equal(together.classes, apart.classes)
    assert torch.equal(together.clusters, apart.clusters)
    assert together.merges_per_round == apart.merges_per_round
