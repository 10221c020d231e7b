"""The PQ surrogate and the ablation's losses: hard cases, gradients, bad input."""

from __future__ import annotations

import pytest
import torch

from gpucops.losses import edge_f1_loss, node_l1_loss, panoptic_quality_loss

THRESHOLDS = torch.tensor([2.0, 2.0, 2.0])


def _one_hot(segments, num):
    return torch.stack([(segments == k).double() for k in range(num)], 0).unsqueeze(0)


def test_perfect_prediction_has_zero_loss():
    segments = torch.tensor([[0, 0, 1, 1], [2, 2, 1, 1]])
    target = _one_hot(segments, 3)
    classes = torch.tensor([[0, 1, 1]])
    loss = panoptic_quality_loss(target.clone(), target, classes, THRESHOLDS, loss_weight=10)
    assert loss.item() == pytest.approx(0.0, abs=1e-12)


def test_everything_wrong_is_just_below_the_weight():
    # ten segments of one class, each predicted on its neighbour's pixels: IoU ≈ 0, so every
    # channel is a false negative and PQ = 0.1 / (½·10 + 0.1) by the smoothing alone
    segments = torch.arange(10).repeat_interleave(4).view(1, 4, 10)
    target = _one_hot(segments[0], 10)
    prediction = target.roll(1, dims=1)
    classes = torch.zeros(1, 10, dtype=torch.int64)
    loss = panoptic_quality_loss(prediction, target, classes, THRESHOLDS, None, 10)
    assert loss.item() == pytest.approx(10 * (1 - 0.1 / 5.1), rel=1e-9)
    assert loss.item() < 10


def test_false_positive_and_negative_channels_count():
    target = torch.zeros(1, 2, 10, 10, dtype=torch.float64)
    target[0, 0] = 1  # a GT-only channel (FN), and a prediction-only channel (FP)
    prediction = torch.zeros_like(target)
    prediction[0, 1] = 1
    classes = torch.tensor([[0, 0]])
    loss = panoptic_quality_loss(prediction, target, classes, THRESHOLDS)
    matched = panoptic_quality_loss(target, target, classes[:, :1].expand(1, 2) * 0, THRESHOLDS)
    assert loss.item() > 0.9
    assert matched.item() < loss.item()


def test_void_pixels_do_not_count():
    target = torch.zeros(1, 1, 4, 4, dtype=torch.float64)
    target[0, 0, :2] = 1
    prediction = target.clone()
    prediction[0, 0, 3] = 1  # wrong only on the last row, which is void
    weights = torch.ones(1, 4, 4, dtype=torch.float64)
    weights[0, 3] = 0
    classes = torch.tensor([[0]])
    thresholds = torch.tensor([0.0])
    with_void = panoptic_quality_loss(prediction, target, classes, thresholds, weights)
    without = panoptic_quality_loss(prediction, target, classes, thresholds)
    assert with_void.item() < without.item()


def test_gradient_matches_finite_differences():
    g = torch.Generator().manual_seed(0)
    prediction = torch.rand(2, 3, 5, 6, generator=g, dtype=torch.float64).requires_grad_()
    target = (torch.rand(2, 3, 5, 6, generator=g, dtype=torch.float64) > 0.5).double()
    target[1, 2] = 0  # an empty target channel (a false positive)
    classes = torch.tensor([[0, 1, 2], [1, 2, -1]])
    weights = (torch.rand(2, 5, 6, generator=g, dtype=torch.float64) > 0.2).double()
    assert torch.autograd.gradcheck(
        lambda p: panoptic_quality_loss(p, target, classes, THRESHOLDS.double(), weights, 10),
        (prediction,),
    )


def test_no_channels_gives_a_zero_with_a_graph():
    prediction = torch.zeros(2, 0, 3, 3, requires_grad=True)
    loss = panoptic_quality_loss(
        prediction, prediction.detach(), torch.zeros(2, 0).long(), THRESHOLDS
    )
    loss.backward()
    assert loss.item() == 0 and torch.isfinite(prediction.grad).all()


def test_bad_shapes_name_the_argument():
    with pytest.raises(ValueError, match="prediction and target"):
        panoptic_quality_loss(
            torch.zeros(1, 2, 3, 3), torch.zeros(1, 3, 3, 3), torch.zeros(1, 2).long(), THRESHOLDS
        )
    with pytest.raises(ValueError, match="channel_classes"):
        panoptic_quality_loss(
            torch.zeros(1, 2, 3, 3), torch.zeros(1, 2, 3, 3), torch.zeros(1, 3).long(), THRESHOLDS
        )


def test_ablation_losses():
    classes = torch.zeros(1, 3, 2, 2)
    classes[0, 1] = 1
    assert node_l1_loss(classes, classes).item() == 0
    wrong = classes.roll(1, dims=1)
    assert node_l1_loss(wrong, classes).item() == pytest.approx(2.0)  # two entries per pixel
    cuts = (torch.rand(2, 4, 5, 5, generator=torch.Generator().manual_seed(1)) > 0.5).float()
    assert edge_f1_loss(cuts, cuts).item() == pytest.approx(0.0)
    assert edge_f1_loss(cuts, 1 - cuts).item() == pytest.approx(1.0)
    # an edge with weight 0 (void, no edge) counts nowhere
    weights = torch.ones_like(cuts)
    flipped = cuts.clone()
    flipped[0, 0, 0, 0] = 1 - flipped[0, 0, 0, 0]
    weights[0, 0, 0, 0] = 0
    assert edge_f1_loss(flipped, cuts, weights).item() == pytest.approx(0.0)
