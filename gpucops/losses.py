"""Losses through the AMWC layer: the panoptic-quality surrogate and the ablation's losses.

:func:`panoptic_quality_loss` is the official formula (``aabbas90/COPS`` branch ``camera_ready``,
``affinityNet/panoptic_affinity/``: ``PanopticQualityLoss`` and ``iou_batch`` of ``losses.py``,
``fg_k`` from ``PanopticAffinityAMWC.compute_foreground_probabilities`` of
``panoptic_seg_affinity.py``):

    IoU_k = (I_k + 0.1) / (U_k + 0.1)            void-weighted, on the aligned one-hots P, G
    tp_k  = IoU⁴ / (IoU⁴ + (1 − IoU)⁴)           soft "IoU > 0.5"
    fg_k  = sigmoid(0.1 · (Σ P_k − thr[class]))  soft "the segment is kept"
    TP = tp·fg·[G_k ≠ ∅],  FN = (1 − tp)·[G_k ≠ ∅],  FP = (1 − tp)·fg·[G_k = ∅]
    PQ_c  = (Σ TP·IoU + 0.1) / (Σ TP + ½ Σ FN + ½ Σ FP + 0.1)    sums over the batch's channels of c
    loss  = weight · (1 − mean of PQ_c over the classes with a channel)

Per-class sums are one-hot matrix products (deterministic on every device).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .matching import IOU_EPS

__all__ = [
    "affinity_pretraining_loss",
    "edge_f1_loss",
    "node_l1_loss",
    "panoptic_quality_loss",
    "semantic_pretraining_loss",
]


def _per_class(values: torch.Tensor, classes: torch.Tensor, num_classes: int) -> torch.Tensor:
    """``[num_classes, M]`` sums of ``values [B, S, M]`` over channels by ``classes [B, S]``
    (−1 skipped)."""
    one_hot = F.one_hot(classes.clamp(min=0), num_classes).to(values.dtype)
    one_hot = one_hot * (classes >= 0).unsqueeze(-1).to(values.dtype)
    return one_hot.flatten(0, 1).T @ values.flatten(0, 1)


def panoptic_quality_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    channel_classes: torch.Tensor,
    area_thresholds: torch.Tensor,
    weights: torch.Tensor | None = None,
    loss_weight: float = 1.0,
) -> torch.Tensor:
    """The PQ surrogate of COPS.

    Args:
        prediction: ``P [B, S, H, W]`` float aligned predicted one-hot (from the layer).
        target: ``G [B, S, H, W]`` the aligned ground truth.
        channel_classes: ``[B, S]`` int64 class of each channel, −1 for padding.
        area_thresholds: ``[K]`` float area (pixels of this grid) at which a segment's
            foreground probability is ½ (COPS training: things 200/4, Cityscapes stuff 2048/16).
        weights: ``[B, H, W]`` pixel weights of the IoU (0 at void); None = 1.
        loss_weight: w (Cityscapes 10, COCO 100).
    Returns:
        a scalar; 0 for a perfect prediction, just below ``loss_weight`` when all is wrong.
    """
    if prediction.shape != target.shape or prediction.dim() != 4:
        raise ValueError(
            f"prediction and target must both be [B, S, H, W], got {tuple(prediction.shape)} "
            f"and {tuple(target.shape)}"
        )
    if channel_classes.shape != prediction.shape[:2]:
        raise ValueError(
            f"channel_classes must be [B, S] = {tuple(prediction.shape[:2])}, "
            f"got {tuple(channel_classes.shape)}"
        )
    target = target.to(prediction.dtype)
    weight = 1.0 if weights is None else weights.unsqueeze(1).to(prediction.dtype)
    intersection = (prediction * target * weight).sum(dim=(2, 3))
    union = ((prediction + target - prediction * target) * weight).sum(dim=(2, 3))
    iou = (intersection + IOU_EPS) / (union + IOU_EPS)
    tp = iou**4 / (iou**4 + (1 - iou) ** 4)
    thresholds = area_thresholds.to(prediction)[channel_classes.clamp(min=0)]
    foreground = torch.sigmoid(0.1 * (prediction.sum(dim=(2, 3)) - thresholds))
    has_gt = (target.sum(dim=(2, 3)) > 0).to(prediction.dtype)
    true_positive = tp * foreground * has_gt
    false_negative = (1 - tp) * has_gt
    false_positive = (1 - tp) * foreground * (1 - has_gt)
    sums = _per_class(
        torch.stack([true_positive * iou, true_positive, false_negative, false_positive], -1),
        channel_classes,
        area_thresholds.numel(),
    )
    present = (
        _per_class(torch.ones_like(iou).unsqueeze(-1), channel_classes, area_thresholds.numel())[
            :, 0
        ]
        > 0
    )
    quality = (sums[:, 0] + 0.1) / (sums[:, 1] + 0.5 * sums[:, 2] + 0.5 * sums[:, 3] + 0.1)
    if not bool(present.any()):
        return prediction.sum() * 0  # nothing to score: a zero that keeps the graph
    return loss_weight * (1 - quality[present].mean())


def node_l1_loss(
    classes: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Supplementary eq. 8: ``(1/|V|) ‖x − x_g‖₁`` of class one-hots ``[B, K, H, W]``, each pixel
    weighted by ``weights [B, H, W]`` (void 0; the paper up-weights small things and thing
    classes as in pre-training)."""
    difference = (classes - target.to(classes.dtype)).abs().sum(dim=1)
    if weights is not None:
        difference = difference * weights.to(difference.dtype)
    return difference.mean()


def edge_f1_loss(
    cuts: torch.Tensor, target: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Supplementary eq. 9 per affinity classifier (distance), averaged over distances:
    ``1 − yᵀy_g / (yᵀy_g + ½ (yᵀ(1 − y_g) + (1 − y)ᵀy_g))`` on cut indicators ``[B, 2·|D|, H,
    W]`` (edge weights 0 where no edge or void)."""
    weight = torch.ones_like(cuts) if weights is None else weights.to(cuts.dtype)
    # [B, |D|, 2, H, W]: one F1 per distance over its row and col maps
    y, y_g, w = (x.to(cuts.dtype).unflatten(1, (-1, 2)) for x in (cuts, target, weight))
    dims = (0, 2, 3, 4)
    hits = (w * y * y_g).sum(dim=dims)
    wrong = (w * y * (1 - y_g)).sum(dim=dims) + (w * (1 - y) * y_g).sum(dim=dims)
    return (1 - hits / (hits + 0.5 * wrong).clamp(min=1e-12)).mean()


def _top_k_mean(losses: torch.Tensor, top_k: float) -> torch.Tensor:
    """Mean of the largest ``top_k`` fraction of ``losses [B, M]`` per batch (hard-pixel
    mining as DeepLab's; 1.0 = the plain mean)."""
    if not 0 < top_k <= 1:
        raise ValueError(f"top_k must lie in (0, 1], got {top_k}")
    flat = losses.flatten()
    if top_k < 1 and flat.numel():  # an all-void batch has no pixel to mine: its loss is 0
        flat = flat.topk(max(1, int(top_k * flat.numel()))).values
    return flat.mean() if flat.numel() else losses.sum() * 0


def semantic_pretraining_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor | None = None,
    top_k: float = 0.2,
    ignore_index: int = 255,
) -> torch.Tensor:
    """Pre-training semantic loss (official code: ``PanopticAffinitySemSegHead.losses``, a
    detectron2 ``DeepLabCE``, of ``aabbas90/COPS`` ``panoptic_seg_affinity.py``): the stride-4
    ``logits [B, K, h, w]`` upsampled bilinearly to ``target [B, H, W]``, per-pixel cross-entropy
    times ``weights [B, H, W]`` (small-instance weights), mean of the hardest ``top_k`` fraction
    (0.2 Cityscapes, 1.0 COCO); ``ignore_index`` pixels count nowhere."""
    logits = F.interpolate(logits, target.shape[-2:], mode="bilinear", align_corners=False)
    losses = F.cross_entropy(logits, target, ignore_index=ignore_index, reduction="none")
    if weights is not None:
        losses = losses * weights
    keep = target != ignore_index
    return _top_k_mean(losses[keep], top_k)


def affinity_pretraining_loss(
    logits: torch.Tensor,
    target: torch.Tensor,
    weights: torch.Tensor,
    top_k: float = 0.25,
    loss_weight: float = 0.25,
) -> torch.Tensor:
    """Pre-training affinity loss (§4.5): BCE-with-logits of every edge map ``[B, 2·|D|, h, w]``
    (target 1 = cut) times its weights, mean of the hardest ``top_k`` per (distance, direction)
    channel, summed over channels, times ``loss_weight``."""
    losses = F.binary_cross_entropy_with_logits(logits, target.to(logits.dtype), reduction="none")
    losses = losses * weights
    return loss_weight * sum(_top_k_mean(losses[:, c], top_k) for c in range(losses.shape[1]))
