"""Every metric of a panoptic prediction in COCO-panoptic files, in one pass over the images:
PQ/SQ/RQ (all, things, stuff, per class; optionally boundary PQ), mIoU of the category maps
(and, given the semantic head's class maps, the mIoU of those: the official Cityscapes one), and
mask AP of the thing segments through pycocotools (the score of each predicted segment is its
``score`` in ``segments_info`` — what ``gpucops predict`` writes, supplementary eq. 12 — or 1).

What ``gpucops evaluate`` prints. Cityscapes' own instance AP needs its ``instanceIds`` files:
:func:`gpucops.metrics.cityscapes_ap`.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..data.panoptic_files import file_in, panoptic_pairs, read_label_png
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
    semantic_dir: str | Path | None = None,
) -> dict:
    """PQ, mIoU and AP of prediction files against ground-truth files (the inputs of
    cityscapesscripts' panoptic evaluation).

    ``semantic_dir``: the semantic head's class maps as label PNGs of category ids, named as
    the predictions' ``file_name`` (``gpucops predict``'s ``semantic/``), scored against the
    ground truth's category maps (crowd regions included, void ignored).

    Returns:
        ``{"pq": <panoptic_quality's dict>, "boundary_pq": same or absent, "miou": {"miou",
        "accuracy", "per_class": {category id: IoU or None}} (of the panoptic output),
        "miou_semantic": the same of the semantic maps or absent, "ap": {"ap", "ap50", "ap75"}
        or absent, "categories": {id: name}, "images": n}``.
    """
    categories, pairs = panoptic_pairs(gt_json, gt_dir, pred_json, pred_dir)
    categories = sorted(categories, key=lambda c: c["id"])
    kinds = {c["id"]: bool(c["isthing"]) for c in categories}
    class_of = {c["id"]: k for k, c in enumerate(categories)}
    metrics = {"pq": PanopticQuality(kinds)}
    if boundary_ratio is not None:
        metrics["boundary_pq"] = PanopticQuality(kinds, boundary_ratio)
    semantic = SemanticIoU(len(categories), ignore_index=-1)
    head = SemanticIoU(len(categories), ignore_index=-1) if semantic_dir is not None else None
    lookup = np.full(256, -1, dtype=np.int64)  # category id → class index (−1: unknown)
    for category, index in class_of.items():
        if 0 <= category < 256:
            lookup[category] = index
    truth, predicted = [], []
    images = 0
    for gt_annotation, gt_ids, pred_annotation, pred_ids in pairs:
        gt_segments, pred_segments = (
            gt_annotation["segments_info"],
            pred_annotation["segments_info"],
        )
        for metric in metrics.values():
            metric.update(gt_ids, gt_segments, pred_ids, pred_segments)
        truth_classes = _class_map(gt_ids, gt_segments, class_of)
        semantic.update(_class_map(pred_ids, pred_segments, class_of), truth_classes)
        if head is not None:
            path = file_in(semantic_dir, pred_annotation["file_name"], pred_json)
            labels = read_label_png(path)
            if labels.shape != gt_ids.shape:
                raise ValueError(f"semantic map {path} is not of its ground truth's size")
            head.update(torch.from_numpy(lookup[labels]), truth_classes)
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
    for name, metric in (("miou", semantic), ("miou_semantic", head)):
        if metric is None:
            continue
        iou = metric.compute()
        result[name] = {
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
