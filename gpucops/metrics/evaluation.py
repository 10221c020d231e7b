"""Every metric of a panoptic prediction in COCO-panoptic files, in one pass over the images:
PQ/SQ/RQ (all, things, stuff, per class; optionally boundary PQ), mIoU of the category maps, and
mask AP of the thing segments through pycocotools (the score of each predicted segment is its
``score`` in ``segments_info`` — what ``gpucops predict`` writes, supplementary eq. 12 — or 1).

What ``gpucops evaluate`` prints. Cityscapes' own instance AP needs its ``instanceIds`` files:
:func:`gpucops.metrics.cityscapes_ap`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.panoptic_files import panoptic_pairs
from .instances import coco_ap
from .panoptic import PanopticQuality
from .semantic import SemanticIoU

__all__ = ["evaluate_panoptic"]


def _class_map(ids: np.ndarray, segments: list[dict], class_of: dict[int, int]) -> torch.Tensor:
    """Class index per pixel (−1: void or a segment of an unknown category)."""
    lookup = {s["id"]: class_of.get(s["category_id"], -1) for s in segments}
    labels, inverse = np.unique(ids, return_inverse=True)
    classes = np.array([lookup.get(int(label), -1) for label in labels], dtype=np.int64)
    return torch.from_numpy(classes[inverse.reshape(ids.shape)])


def evaluate_panoptic(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_json: str | Path,
    pred_dir: str | Path,
    boundary_ratio: float | None = None,
    ap: bool = True,
) -> dict:
    """PQ, mIoU and AP of prediction files against ground-truth files (the inputs of
    cityscapesscripts' panoptic evaluation).

    Returns:
        ``{"pq": <panoptic_quality's dict>, "boundary_pq": same or absent, "miou": {"miou",
        "accuracy", "per_class": {category id: IoU}}, "ap": {"ap", "ap50", "ap75"} or absent,
        "categories": {id: name}, "images": n}``.
    """
    categories, pairs = panoptic_pairs(gt_json, gt_dir, pred_json, pred_dir)
    categories = sorted(categories, key=lambda c: c["id"])
    kinds = {c["id"]: bool(c["isthing"]) for c in categories}
    class_of = {c["id"]: k for k, c in enumerate(categories)}
    metrics = {"pq": PanopticQuality(kinds)}
    if boundary_ratio is not None:
        metrics["boundary_pq"] = PanopticQuality(kinds, boundary_ratio)
    semantic = SemanticIoU(len(categories), ignore_index=-1)
    truth, predicted = [], []
    images = 0
    for gt_annotation, gt_ids, pred_annotation, pred_ids in pairs:
        gt_segments, pred_segments = (
            gt_annotation["segments_info"],
            pred_annotation["segments_info"],
        )
        for metric in metrics.values():
            metric.update(gt_ids, gt_segments, pred_ids, pred_segments)
        semantic.update(
            _class_map(pred_ids, pred_segments, class_of), _class_map(gt_ids, gt_segments, class_of)
        )
        if ap:
            truth.append(
                [(s["category_id"], gt_ids == s["id"], bool(s.get("iscrowd", 0)))
                 for s in gt_segments if kinds.get(s["category_id"])]
            )  # fmt: skip
            predicted.append(
                [(s["category_id"], pred_ids == s["id"], float(s.get("score", 1.0)))
                 for s in pred_segments if kinds.get(s["category_id"])]
            )  # fmt: skip
        images += 1
    result = {name: metric.compute() for name, metric in metrics.items()}
    iou = semantic.compute()
    result["miou"] = {
        "miou": iou["miou"],
        "accuracy": iou["accuracy"],
        "per_class": {
            c["id"]: value for c, value in zip(categories, iou["per_class"], strict=True)
        },
    }
    if ap:
        result["ap"] = (
            coco_ap(truth, predicted) if images else {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}
        )
    result["categories"] = {c["id"]: c.get("name", str(c["id"])) for c in categories}
    result["images"] = images
    return result
