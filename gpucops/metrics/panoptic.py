"""Panoptic quality (PQ, SQ, RQ) exactly as the official evaluators compute it.

The algorithm of COCO's ``panopticapi`` and cityscapesscripts' ``evaluatePanoptic``: per image, a
ground-truth and a predicted segment of one category match when their IoU exceeds 0.5, where
the union leaves out the prediction's pixels on void; unmatched ground truth counts as a false
negative unless it is a crowd region; an unmatched prediction counts as a false positive unless
more than half of it lies on void or on a crowd region of its category. Per category
``PQ = Σ IoU / (TP + ½ FP + ½ FN)``, ``SQ = Σ IoU / TP``, ``RQ = TP / (TP + ½ FP + ½ FN)``;
All/Things/Stuff average over the categories with any TP, FP or FN. Boundary PQ (the
supplementary's Table 7) replaces each pair's IoU by min(mask IoU, boundary IoU).

:class:`PanopticQuality` accumulates in process (validation during training), on the device of
the id maps it is given (NumPy arrays: the CPU);
:func:`panoptic_quality` evaluates COCO-panoptic files and returns the same dict as
cityscapesscripts.
"""

from __future__ import annotations

import math
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.panoptic_files import panoptic_pairs

__all__ = ["PanopticQuality", "boundary_band", "panoptic_quality"]

VOID = 0
OFFSET = 256 * 256 * 256


def _tensor(ids: np.ndarray | torch.Tensor) -> torch.Tensor:
    """Segment ids as an int64 tensor, on the device they came on (NumPy: the CPU)."""
    if isinstance(ids, torch.Tensor):
        return ids.long()
    return torch.from_numpy(np.asarray(ids).astype(np.int64))


def boundary_band(mask: np.ndarray | torch.Tensor, width: int) -> np.ndarray | torch.Tensor:
    """The pixels of ``mask [H, W]`` within chessboard distance ``width`` of its contour, the
    image border included (boundary IoU, Cheng et al. 2021: the mask minus its erosion by a 3×3
    square, ``width`` times, with the image padded by background). NumPy in, NumPy out; a tensor
    stays on its device."""
    tensor = torch.as_tensor(mask).bool()
    outside = F.pad((~tensor).float()[None, None], (width,) * 4, value=1.0)
    near_outside = F.max_pool2d(outside, 2 * width + 1, stride=1)[0, 0] > 0
    band = tensor & near_outside
    return band.numpy() if isinstance(mask, np.ndarray) else band


class PanopticQuality:
    """PQ statistics accumulated over images.

    Args:
        categories: category id → True for a thing category (what the ground truth JSON's
            ``categories`` say with ``isthing``).
        boundary_ratio: None for PQ; a dilation ratio (0.02 in the boundary-IoU paper) for
            boundary PQ, where the IoU of a pair is min(mask IoU, boundary IoU) with bands of
            ``round(ratio · image diagonal)`` pixels (at least 1).
    """

    def __init__(self, categories: dict[int, bool], boundary_ratio: float | None = None):
        # a ratio of the diagonal: 2 (a percent typed as a ratio) would dilate every mask over
        # the whole image, one slow pass per segment pair
        if boundary_ratio is not None and not 0 < boundary_ratio < 1:
            raise ValueError(
                f"boundary_ratio must lie in (0, 1), a fraction of the image diagonal (e.g. "
                f"0.02), got {boundary_ratio!r}"
            )
        self.categories = dict(categories)
        self.boundary_ratio = boundary_ratio
        # per category: the IoU of every match, and the TP/FP/FN counts. The IoUs are summed
        # with math.fsum at compute(), a correctly rounded sum whatever the order, so results
        # merged from shards (merge) equal one process's evaluation bit for bit
        self.ious: dict[int, list[float]] = defaultdict(list)
        self.counts: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])  # tp fp fn

    def _boundary_iou(
        self, gt_ids: torch.Tensor, pred_ids: torch.Tensor, gt_label: int, pred_label: int,
        cache: dict,
    ) -> float:  # fmt: skip
        height, width = gt_ids.shape
        band = max(1, round(self.boundary_ratio * float(np.hypot(height, width))))
        for key, ids, label in (("gt", gt_ids, gt_label), ("pred", pred_ids, pred_label)):
            if (key, label) not in cache:
                cache[key, label] = boundary_band(ids == label, band)
        first, second = cache["gt", gt_label], cache["pred", pred_label]
        union = int((first | second).sum())
        return int((first & second).sum()) / union if union else 0.0

    def update(
        self,
        gt_ids: np.ndarray | torch.Tensor,
        gt_segments: list[dict],
        pred_ids: np.ndarray | torch.Tensor,
        pred_segments: list[dict],
    ) -> None:
        """Add one image: segment id maps ``[H, W]`` (0 = void) and their ``segments_info``
        (``id``, ``category_id``; ground truth also ``area`` and ``iscrowd``)."""
        gt_ids = _tensor(gt_ids)
        pred_ids = _tensor(pred_ids).to(gt_ids.device)
        if gt_ids.shape != pred_ids.shape:
            raise ValueError(
                f"gt_ids {tuple(gt_ids.shape)} and pred_ids {tuple(pred_ids.shape)} differ"
            )
        gt = {s["id"]: s for s in gt_segments}
        pred = {s["id"]: dict(s) for s in pred_segments}
        labels, counts = torch.unique(pred_ids, return_counts=True)
        missing = set(pred)
        for label, count in zip(labels.tolist(), counts.tolist(), strict=True):
            if label == VOID:
                continue
            if label not in pred:
                raise ValueError(f"segment {label} is in the prediction PNG but not its JSON")
            if pred[label]["category_id"] not in self.categories:
                raise ValueError(
                    f"segment {label} has unknown category_id {pred[label]['category_id']}"
                )
            pred[label]["area"] = count
            missing.discard(label)
        if missing:
            raise ValueError(
                f"segments {sorted(missing)} are in the prediction JSON but not its PNG"
            )

        # one pass over the pixels, on their device; the rest is per segment pair
        pairs, counts = torch.unique(gt_ids * OFFSET + pred_ids, return_counts=True)
        overlap = {
            (int(p // OFFSET), int(p % OFFSET)): int(c)
            for p, c in zip(pairs.tolist(), counts.tolist(), strict=True)
        }
        gt_matched, pred_matched = set(), set()
        bands: dict = {}
        for (gt_label, pred_label), intersection in overlap.items():
            if gt_label not in gt or pred_label not in pred or gt[gt_label]["iscrowd"] == 1:
                continue
            category = gt[gt_label]["category_id"]
            if category != pred[pred_label]["category_id"]:
                continue
            union = (
                pred[pred_label]["area"] + gt[gt_label]["area"] - intersection
                - overlap.get((VOID, pred_label), 0)
            )  # fmt: skip
            iou = intersection / union
            if self.boundary_ratio is not None and iou > 0.5:
                boundary = self._boundary_iou(gt_ids, pred_ids, gt_label, pred_label, bands)
                iou = min(iou, boundary)
            if iou > 0.5:
                self.ious[category].append(iou)
                self.counts[category][0] += 1
                gt_matched.add(gt_label)
                pred_matched.add(pred_label)
        crowd = {}
        for gt_label, info in gt.items():
            if gt_label in gt_matched:
                continue
            if info["iscrowd"] == 1:
                crowd[info["category_id"]] = gt_label
                continue
            self.counts[info["category_id"]][2] += 1
        for pred_label, info in pred.items():
            if pred_label in pred_matched:
                continue
            ignored = overlap.get((VOID, pred_label), 0)
            if info["category_id"] in crowd:
                ignored += overlap.get((crowd[info["category_id"]], pred_label), 0)
            if ignored / info["area"] > 0.5:
                continue
            self.counts[info["category_id"]][1] += 1

    def merge(self, other: PanopticQuality) -> PanopticQuality:
        """Add ``other``'s images (another shard of the same evaluation: same categories and
        boundary ratio) to this one; returns self. The merged result equals one accumulator
        that saw every image, bit for bit."""
        if other.categories != self.categories or other.boundary_ratio != self.boundary_ratio:
            raise ValueError("merge needs accumulators of the same categories and boundary_ratio")
        for category, ious in other.ious.items():
            self.ious[category].extend(ious)
        for category, counts in other.counts.items():
            mine = self.counts[category]
            for position, count in enumerate(counts):
                mine[position] += count
        return self

    def state(self) -> dict:
        """The accumulated statistics as plain values (for ``all_gather_object``); see
        :meth:`from_state`."""
        return {
            "categories": self.categories, "boundary_ratio": self.boundary_ratio,
            "ious": dict(self.ious), "counts": dict(self.counts),
        }  # fmt: skip

    @classmethod
    def from_state(cls, state: dict) -> PanopticQuality:
        """An accumulator holding :meth:`state`'s statistics."""
        metric = cls(state["categories"], state["boundary_ratio"])
        metric.ious.update({k: list(v) for k, v in state["ious"].items()})
        metric.counts.update({k: list(v) for k, v in state["counts"].items()})
        return metric

    def compute(self) -> dict:
        """``{"All" | "Things" | "Stuff": {"pq", "sq", "rq", "n"}, "per_class": {id: {...}}}``.

        A category absent from both the ground truth and the predictions (no TP, FP or FN) has
        ``None`` scores — absent, not 0 (cityscapesscripts writes 0.0) — and is left out of the
        means (``n`` counts the others), as in the official evaluation."""
        results = {}
        for name, kind in (("All", None), ("Things", True), ("Stuff", False)):
            total, per_class = {"pq": 0.0, "sq": 0.0, "rq": 0.0}, {}
            n = 0
            for category, isthing in self.categories.items():
                if kind is not None and isthing != kind:
                    continue
                tp, fp, fn = self.counts[category]
                iou = math.fsum(self.ious[category])
                if tp + fp + fn == 0:
                    per_class[category] = {"pq": None, "sq": None, "rq": None}
                    continue
                n += 1
                scores = {
                    "pq": iou / (tp + 0.5 * fp + 0.5 * fn),
                    "sq": iou / tp if tp else 0,
                    "rq": tp / (tp + 0.5 * fp + 0.5 * fn),
                }
                per_class[category] = scores
                for key, value in scores.items():
                    total[key] += value
            results[name] = {key: value / n if n else 0.0 for key, value in total.items()}
            results[name]["n"] = n
            if name == "All":
                results["per_class"] = per_class
        return results


def panoptic_quality(
    gt_json: str | Path,
    gt_dir: str | Path,
    pred_json: str | Path,
    pred_dir: str | Path,
    boundary_ratio: float | None = None,
) -> dict:
    """PQ/SQ/RQ of COCO-panoptic prediction files against ground-truth files (boundary PQ with
    ``boundary_ratio``, see :class:`PanopticQuality`).

    Returns the dict of :meth:`PanopticQuality.compute` — the shape of cityscapesscripts'
    ``evaluatePanoptic`` result. Every ground-truth image needs a prediction of its size.
    """
    categories, pairs = panoptic_pairs(gt_json, gt_dir, pred_json, pred_dir)
    metric = PanopticQuality({c["id"]: bool(c["isthing"]) for c in categories}, boundary_ratio)
    for gt_annotation, gt_ids, pred_annotation, pred_ids in pairs:
        metric.update(
            gt_ids, gt_annotation["segments_info"], pred_ids, pred_annotation["segments_info"]
        )
    return metric.compute()
