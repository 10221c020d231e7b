"""The seeded synthetic street-scene problems."""

from __future__ import annotations

import pytest
import torch

from gpucops import grid_edges
from gpucops.synthetic import CITYSCAPES_CLASSES, class_roles, make_problem


def test_shapes_dtypes_and_seeding():
    p = make_problem(2, 24, 40, 19, distances=(1, 4, 16), seed=5)
    assert p.node_costs.shape == (2, 19, 24, 40) and p.node_costs.dtype == torch.float32
    assert p.edge_costs.shape == (2, 6, 24, 40) and p.edge_costs.dtype == torch.float32
    assert p.classes.shape == p.segments.shape == (2, 24, 40)
    again = make_problem(2, 24, 40, 19, distances=(1, 4, 16), seed=5)
    assert torch.equal(p.node_costs, again.node_costs) and torch.equal(
        p.edge_costs, again.edge_costs
    )
    other = make_problem(2, 24, 40, 19, distances=(1, 4, 16), seed=6)
    assert not torch.equal(p.node_costs, other.node_costs)


def test_image_b_does_not_depend_on_the_batch_size():
    small = make_problem(1, 16, 20, 5, distances=(1, 2), seed=3)
    large = make_problem(3, 16, 20, 5, distances=(1, 2), seed=3)
    assert torch.equal(small.node_costs[0], large.node_costs[0])
    assert torch.equal(small.segments[0], large.segments[0])


@pytest.mark.parametrize(("num_classes", "things"), [(19, 8), (133, 80), (2, 1), (1, 0)])
def test_partitionable_classes(num_classes, things):
    roles, partitionable = class_roles(num_classes)
    assert partitionable.shape == (num_classes,) and int(partitionable.sum()) == things
    if num_classes == 19:
        assert CITYSCAPES_CLASSES[roles["car"]] == "car" and partitionable[roles["car"]]
        assert CITYSCAPES_CLASSES[roles["road"]] == "road" and not partitionable[roles["road"]]


@pytest.mark.parametrize("num_classes", [19, 133])
def test_ground_truth_is_a_panoptic_labeling(num_classes):
    p = make_problem(1, 64, 128, num_classes, seed=2)
    classes, segments = p.classes[0], p.segments[0]
    _, partitionable = class_roles(num_classes)
    ids = segments.unique()
    assert torch.equal(ids, torch.arange(ids.numel()))  # compact
    seen_stuff = set()
    for s in ids.tolist():
        segment_classes = classes[segments == s].unique()
        assert segment_classes.numel() == 1  # one class per segment
        c = int(segment_classes)
        if not partitionable[c]:
            assert c not in seen_stuff  # one segment per stuff class
            seen_stuff.add(c)
    assert int(partitionable[classes].sum()) > 0  # the scene has things
    assert len(seen_stuff) >= 4  # and several stuff classes


def test_costs_follow_the_ground_truth():
    p = make_problem(1, 64, 128, 19, seed=4)
    accuracy = (p.node_costs.argmin(dim=1) == p.classes).double().mean()
    assert 0.8 < accuracy < 0.99  # informative but noisy
    edges, map_index = grid_edges(64, 128, p.distances)
    costs = p.edge_costs.flatten()[map_index]
    segments = p.segments.flatten()
    same = segments[edges[:, 0]] == segments[edges[:, 1]]
    assert costs[same].mean() > 1 and costs[~same].mean() < -1
    masked = torch.ones(p.edge_costs.numel(), dtype=torch.bool)
    masked[map_index] = False
    assert bool((p.edge_costs.flatten()[masked] == 0).all())
