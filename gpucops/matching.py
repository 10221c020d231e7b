"""Alignment of predicted segments with ground-truth segments, for the PQ surrogate loss.

The official code's matching step (``aabbas90/COPS`` branch ``camera_ready``,
``affinityNet/panoptic_affinity/utils.py``: ``ComputeBestGroundTruth``, ``MatchMasksPair``), no
gradient: per image and class, ground-truth segments are matched to predicted segments of the same
class by Hungarian matching (``scipy.optimize.linear_sum_assignment``, maximising) on the
void-weighted IoU with ε = 0.1, which is positive for every pair, so every prediction that can be
matched is matched (no 0.5 threshold here). A stuff class has one segment per image on both
sides, so this pairs its prediction with its ground-truth mask, empty or not. Unmatched
predictions get an empty ground truth (false positives); unmatched ground-truth segments become
extra channels with an empty prediction (false negatives).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.optimize import linear_sum_assignment

__all__ = ["AlignedSegments", "align_segments", "segment_classes", "soft_iou_matrix"]

IOU_EPS = 0.1


@dataclass
class AlignedSegments:
    """Channels of the aligned one-hots ``P`` and ``G`` ``[B, S, H, W]`` (−1 = none / padding).

    ``pred[b, k]``: predicted segment id of channel k (−1: a false-negative channel);
    ``gt[b, k]``: ground-truth segment id (−1: a false-positive channel);
    ``classes[b, k]``: the class of channel k (−1: padding).
    """

    pred: torch.Tensor  # [B, S] int64
    gt: torch.Tensor  # [B, S] int64
    classes: torch.Tensor  # [B, S] int64

    def one_hot(self, segments: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        """``[B, S, H, W]`` float: channel k is 1 where ``segments == ids[:, k]`` (ids −1: 0)."""
        hot = segments.unsqueeze(1) == ids.view(*ids.shape, 1, 1)
        return (hot & (ids >= 0).view(*ids.shape, 1, 1)).float()


def _compact_ids(segments: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct ids ≥ 0 of ``segments`` (increasing) and ``segments`` renumbered by their
    position among them (−1 stays −1)."""
    keep = segments >= 0
    ids, inverse = torch.unique(segments[keep], return_inverse=True)
    compact = torch.full_like(segments, -1)
    compact[keep] = inverse
    return ids, compact


def segment_classes(classes: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
    """The class of each segment id ``[max id + 1]`` (−1 for ids no pixel has) of one image."""
    keep = segments >= 0
    result = torch.full(
        (int(segments.max()) + 1 if keep.any() else 0,), -1, dtype=torch.int64,
        device=segments.device,
    )  # fmt: skip
    result[segments[keep]] = classes[keep]
    return result


def soft_iou_matrix(
    pred: torch.Tensor, gt: torch.Tensor, weights: torch.Tensor, num_pred: int, num_gt: int
) -> torch.Tensor:
    """``[num_pred, num_gt]`` float64 ε-IoU ``(I + ε) / (U + ε)`` of segment masks, every pixel
    weighted by ``weights`` (0 at void); ids < 0 belong to no segment. One pass over the pixels."""
    pred, gt, weights = pred.flatten(), gt.flatten(), weights.flatten().double()
    both = (pred >= 0) & (gt >= 0)
    intersection = torch.bincount(
        pred[both] * num_gt + gt[both], weights[both], minlength=num_pred * num_gt
    ).view(num_pred, num_gt)
    pred_area = torch.bincount(pred[pred >= 0], weights[pred >= 0], minlength=num_pred)
    gt_area = torch.bincount(gt[gt >= 0], weights[gt >= 0], minlength=num_gt)
    union = pred_area[:, None] + gt_area[None, :] - intersection
    return (intersection + IOU_EPS) / (union + IOU_EPS)


def align_segments(
    pred_classes: torch.Tensor,
    pred_segments: torch.Tensor,
    gt_classes: torch.Tensor,
    gt_segments: torch.Tensor,
    weights: torch.Tensor,
) -> AlignedSegments:
    """Match predicted to ground-truth segments per image and class.

    Args:
        pred_classes, pred_segments: ``[B, H, W]`` int64, the solver's labeling (segment ids
            compact per image).
        gt_classes: ``[B, H, W]`` int64 class per pixel (−1 void).
        gt_segments: ``[B, H, W]`` int64 ground-truth segment id per pixel (−1: none — void and
            crowd, which count as background); one segment per stuff class present.
        weights: ``[B, H, W]`` float pixel weights of the IoU (0 at void).
    Returns:
        :class:`AlignedSegments`, channels ordered by class, then matched pairs, unmatched
        predictions and unmatched ground truth, each by id.
    """
    rows = []
    for b in range(pred_segments.shape[0]):
        pred_class = segment_classes(pred_classes[b], pred_segments[b])
        # ground-truth ids may be anything ≥ 0 (raw COCO ids reach 2^24): match on compact ones,
        # so the IoU matrix is [predictions, ground-truth segments], and report the originals
        gt_ids, gt_segments_b = _compact_ids(gt_segments[b])
        gt_class = segment_classes(gt_classes[b], gt_segments_b)
        iou = soft_iou_matrix(
            pred_segments[b], gt_segments_b, weights[b], pred_class.numel(), gt_class.numel()
        ).cpu().numpy()  # fmt: skip
        pred_class, gt_class = pred_class.cpu().numpy(), gt_class.cpu().numpy()
        channels = []
        for c in np.union1d(pred_class[pred_class >= 0], gt_class[gt_class >= 0]):
            preds, gts = np.flatnonzero(pred_class == c), np.flatnonzero(gt_class == c)
            rows_, cols_ = linear_sum_assignment(iou[np.ix_(preds, gts)], maximize=True)
            channels += [(preds[i], gts[j], c) for i, j in zip(rows_, cols_, strict=True)]
            channels += [(p, -1, c) for p in np.setdiff1d(preds, preds[rows_])]
            channels += [(-1, g, c) for g in np.setdiff1d(gts, gts[cols_])]
        original = gt_ids.cpu().numpy()
        rows.append([(p, original[g] if g >= 0 else -1, c) for p, g, c in channels])
    width = max(map(len, rows), default=0)
    table = torch.full((len(rows), width, 3), -1, dtype=torch.int64)
    for b, channels in enumerate(rows):
        if channels:
            table[b, : len(channels)] = torch.tensor(np.array(channels, dtype=np.int64))
    table = table.to(pred_segments.device)
    return AlignedSegments(table[..., 0], table[..., 1], table[..., 2])
