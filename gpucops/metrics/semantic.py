"""Mean IoU of class maps, accumulated on the labels' device (a confusion matrix by bincount)."""

from __future__ import annotations

import torch

__all__ = ["SemanticIoU"]


class SemanticIoU:
    """Confusion matrix of predicted vs ground-truth classes over images; ``ignore_index``
    ground-truth pixels (void) are skipped. A prediction of −1 or ``ignore_index`` (no class,
    e.g. a void segment of a panoptic prediction) misses the pixel's class without counting for
    any other (column K of the ``[K, K + 1]`` matrix)."""

    def __init__(self, num_classes: int, ignore_index: int = 255):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.confusion = torch.zeros(num_classes, num_classes + 1, dtype=torch.int64)

    def update(self, prediction: torch.Tensor, target: torch.Tensor) -> None:
        """Add class maps of any shape (int, equal shapes)."""
        if prediction.shape != target.shape:
            raise ValueError(f"prediction {tuple(prediction.shape)} and target differ in shape")
        keep = target != self.ignore_index
        gt, pred = target[keep].long(), prediction[keep].long()
        if gt.numel() and (gt.min() < 0 or gt.max() >= self.num_classes):
            raise ValueError(f"target classes must lie in [0, {self.num_classes}) or be ignored")
        k = self.num_classes
        unlabelled = (pred == -1) | (pred == self.ignore_index)
        if bool((((pred < 0) | (pred >= k)) & ~unlabelled).any()):
            raise ValueError(f"prediction classes must lie in [0, {k}), or be −1 / ignore_index")
        pred = torch.where(unlabelled, k, pred)
        counts = torch.bincount(gt * (k + 1) + pred, minlength=k * (k + 1))
        self.confusion += counts.view(k, k + 1).cpu()

    def compute(self) -> dict:
        """``{"miou", "per_class": [IoU, or None for a class absent from both the target and
        the prediction (left out of the mean)], "accuracy"}``."""
        confusion = self.confusion.double()
        intersection = confusion.diagonal()
        union = confusion[:, : self.num_classes].sum(0) + confusion.sum(1) - intersection
        iou = torch.where(union > 0, intersection / union.clamp(min=1), float("nan"))
        present = union > 0
        return {
            "miou": float(iou[present].mean()) if present.any() else 0.0,
            "per_class": [
                value if seen else None
                for value, seen in zip(iou.tolist(), present.tolist(), strict=True)
            ],
            "accuracy": float(intersection.sum() / confusion.sum().clamp(min=1)),
        }
