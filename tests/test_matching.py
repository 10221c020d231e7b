"""Alignment of predicted and ground-truth segments (the loss's matching step)."""

from __future__ import annotations

import itertools

import torch
from hypothesis import given
from hypothesis import strategies as st

from gpucops.matching import align_segments, soft_iou_matrix


def _maps(*rows):
    return torch.tensor(rows, dtype=torch.int64).unsqueeze(0)


def test_hand_made_case():
    # class 0 stuff (one segment each side), class 1 things: GT 2 instances, prediction 3
    pred_classes = _maps([0, 0, 1, 1, 1, 1, 1, 1])
    pred_segments = _maps([0, 0, 1, 1, 2, 2, 3, 3])
    gt_classes = _maps([0, 0, 1, 1, 1, 1, 0, 0])
    gt_segments = _maps([5, 5, 7, 7, 7, 9, 5, 5])
    aligned = align_segments(
        pred_classes, pred_segments, gt_classes, gt_segments, torch.ones(1, 1, 8)
    )
    channels = set(zip(aligned.pred[0].tolist(), aligned.gt[0].tolist(), strict=True))
    # stuff: the prediction of class 0 takes the GT mask of class 0
    assert (0, 5) in channels
    # things: 7 overlaps 1 (2 px) and 2 (1 px) → (1, 7); 9 overlaps 2 → (2, 9); 3 is a FP
    assert {(1, 7), (2, 9), (3, -1)} <= channels
    assert len(channels) == 4
    assert aligned.classes[0].tolist() == [0, 1, 1, 1]


def test_void_weights_and_false_negatives():
    pred_classes, pred_segments = _maps([0, 0, 0, 0]), _maps([0, 0, 0, 0])
    gt_classes, gt_segments = _maps([0, 0, 1, -1]), _maps([0, 0, 1, -1])
    weights = torch.tensor([[[1.0, 1.0, 1.0, 0.0]]])
    aligned = align_segments(pred_classes, pred_segments, gt_classes, gt_segments, weights)
    channels = list(zip(aligned.pred[0].tolist(), aligned.gt[0].tolist(), strict=True))
    assert channels == [(0, 0), (-1, 1)]  # the GT-only thing becomes an extra channel
    prediction = aligned.one_hot(pred_segments, aligned.pred)
    assert prediction[0, 1].sum() == 0  # its prediction is empty
    iou = soft_iou_matrix(pred_segments[0], gt_segments[0], weights[0], 1, 2)
    # void pixel 3 counts nowhere: I = 2, U = 3 (pixels 0–2)
    assert torch.allclose(iou[0, 0], torch.tensor((2 + 0.1) / (3 + 0.1), dtype=torch.float64))


@given(seed=st.integers(0, 10_000), pixels=st.integers(4, 30))
def test_things_match_by_maximum_total_iou(seed, pixels):
    g = torch.Generator().manual_seed(seed)
    pred_segments = torch.randint(0, 4, (1, 1, pixels), generator=g)
    gt_segments = torch.randint(-1, 3, (1, 1, pixels), generator=g)
    ones = torch.ones(1, 1, pixels)
    aligned = align_segments(
        torch.ones_like(pred_segments), pred_segments, torch.ones_like(gt_segments),
        gt_segments, ones,
    )  # fmt: skip
    num_pred = int(pred_segments.max()) + 1
    num_gt = int(gt_segments.max()) + 1
    iou = soft_iou_matrix(pred_segments[0], gt_segments[0], ones[0], num_pred, num_gt)
    present_pred = sorted(set(pred_segments.flatten().tolist()))
    present_gt = sorted(set(gt_segments.flatten().tolist()) - {-1})
    pred_gt = zip(aligned.pred[0].tolist(), aligned.gt[0].tolist(), strict=True)
    pairs = [(p, t) for p, t in pred_gt if p >= 0 and t >= 0]
    assert len(pairs) == min(len(present_pred), len(present_gt))  # every possible match made
    # brute force over all assignments of the smaller side into the larger
    small, large = sorted([present_pred, present_gt], key=len)
    best = 0.0
    for chosen in itertools.permutations(large, len(small)):
        matched = zip(small, chosen, strict=True)
        if small is present_gt:
            matched = ((p, t) for t, p in matched)
        best = max(best, sum(iou[p, t].item() for p, t in matched))
    assert abs(sum(iou[p, t].item() for p, t in pairs) - best) < 1e-9
    # every segment appears exactly once
    assert sorted(p for p in aligned.pred[0].tolist() if p >= 0) == present_pred
    assert sorted(t for t in aligned.gt[0].tolist() if t >= 0) == present_gt
