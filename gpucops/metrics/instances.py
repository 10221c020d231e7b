"""Instance-level AP of the thing segments of a panoptic labeling.

Each thing segment becomes one instance with the score of supplementary eq. 12 (the official
code's ``MaskScore``): the mean semantic logit of its class over its pixels, plus, per distance,
the mean affinity logit over cut edges (exactly one end in the mask) minus the mean over joined
edges (both ends in it) — the means taken over the whole edge map. AP then comes from the
official tools: ``pycocotools`` (COCO, segm) and cityscapesscripts' instance-level evaluation
(Cityscapes, what the paper's AP 34.1 used).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
from pathlib import Path
from unittest import mock

import numpy as np
import torch
from PIL import Image

from ..grid import edge_values_to_maps, grid_edges, stride_samples

__all__ = ["Instance", "cityscapes_ap", "coco_ap", "instance_scores"]

Instance = tuple[int, np.ndarray, float]  # (category id, mask [H, W] bool, score)


def instance_scores(
    semantic_logits: torch.Tensor,
    affinity_logits: torch.Tensor,
    classes: torch.Tensor,
    segments: torch.Tensor,
    partitionable: torch.Tensor,
    distances: tuple[int, ...],
    stride: int = 4,
) -> list[tuple[int, int, float]]:
    """``(segment id, class, score)`` of every thing segment (eq. 12).

    Args:
        semantic_logits: ``[K, H, W]`` at the resolution of ``classes``/``segments`` (the
            official code upsamples the stride-4 logits ×4).
        affinity_logits: ``[2·|D|, h, w]`` at the solver's grid, ``h = ⌈H / stride⌉``.
        classes, segments: ``[H, W]`` the labeling.
    """
    height, width = affinity_logits.shape[-2:]
    edges, _ = grid_edges(height, width, distances, affinity_logits.device)
    rows = stride_samples(classes.shape[0], stride).to(classes.device)
    cols = stride_samples(classes.shape[1], stride).to(classes.device)
    if (len(rows), len(cols)) != (height, width):
        raise ValueError(
            f"affinity_logits {height}×{width} is not the stride-{stride} grid of the "
            f"{classes.shape[0]}×{classes.shape[1]} labeling"
        )
    results = []
    for segment in segments.unique().tolist():
        mask = segments == segment
        category = int(classes[mask][0])
        if segment < 0 or category < 0 or not bool(partitionable[category]):
            continue
        semantic = float(semantic_logits[category][mask].float().mean())
        small = mask[rows][:, cols].flatten()
        first, second = small[edges[:, 0]], small[edges[:, 1]]
        values = torch.stack([first ^ second, first & second]).float()
        cut, join = edge_values_to_maps(values, height, width, distances)
        weighted = affinity_logits.float()
        per_distance = (weighted * cut).unflatten(0, (-1, 2)).mean(dim=(1, 2, 3)) - (
            weighted * join
        ).unflatten(0, (-1, 2)).mean(dim=(1, 2, 3))
        results.append((segment, category, semantic + float(per_distance.sum())))
    return results


def _rle(mask: np.ndarray) -> dict:
    from pycocotools import mask as mask_utils

    encoded = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    encoded["counts"] = encoded["counts"].decode("ascii")
    return encoded


def coco_ap(
    ground_truth: list[list[tuple[int, np.ndarray, bool]]], predictions: list[list[Instance]]
) -> dict:
    """Mask AP with pycocotools' ``COCOeval`` (iouType ``segm``).

    Args:
        ground_truth: per image, ``(category id, mask, iscrowd)`` of every instance.
        predictions: per image, ``(category id, mask, score)``.
    Returns:
        ``{"ap", "ap50", "ap75"}`` (−1 where pycocotools has nothing to score).
    """
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    if len(ground_truth) != len(predictions):
        raise ValueError("ground_truth and predictions must list the same images")
    images, annotations, results, categories = [], [], [], set()
    for image_id, (truth, predicted) in enumerate(zip(ground_truth, predictions, strict=True)):
        height, width = (truth or predicted)[0][1].shape if (truth or predicted) else (1, 1)
        images.append({"id": image_id, "height": height, "width": width})
        for category, mask, crowd in truth:
            rle = _rle(mask)
            annotations.append(
                {"id": len(annotations) + 1, "image_id": image_id, "category_id": category,
                 "segmentation": rle, "area": float(mask.sum()),
                 "bbox": mask_utils.toBbox(rle).tolist(), "iscrowd": int(crowd)}
            )  # fmt: skip
            categories.add(category)
        for category, mask, score in predicted:
            results.append(
                {"image_id": image_id, "category_id": category, "segmentation": _rle(mask),
                 "score": float(score)}
            )  # fmt: skip
            categories.add(category)
    with contextlib.redirect_stdout(io.StringIO()):
        truth = COCO()
        truth.dataset = {
            "images": images,
            "annotations": annotations,
            "categories": [{"id": c} for c in sorted(categories)],
        }
        truth.createIndex()
        if not results:
            return {"ap": 0.0, "ap50": 0.0, "ap75": 0.0}
        evaluation = COCOeval(truth, truth.loadRes(results), "segm")
        evaluation.evaluate()
        evaluation.accumulate()
        evaluation.summarize()
    return {"ap": evaluation.stats[0], "ap50": evaluation.stats[1], "ap75": evaluation.stats[2]}


def _in1d(first: np.ndarray, second: np.ndarray, **kwargs) -> np.ndarray:
    return np.isin(first, second, **kwargs).ravel()


def _write_json(document: dict, path: str) -> None:
    def default(value: object) -> object:
        return value.item() if isinstance(value, np.generic) else value.__dict__

    Path(path).write_text(json.dumps(document, default=default, sort_keys=True, indent=4))


def cityscapes_ap(
    instance_id_files: list[str | Path], predictions: list[list[Instance]], workdir: str | Path
) -> dict:
    """Cityscapes instance-level AP with cityscapesscripts' evaluation on the ground truth's
    ``*_gtFine_instanceIds.png`` files; predictions use Cityscapes label ids.

    The tool's files (masks, per-image lists, its ground-truth cache, its match dump) all go
    into ``workdir``. Returns ``{"ap", "ap50", "per_class": {name: {"ap", "ap50"}}}``.
    """
    from cityscapesscripts.evaluation import evalInstanceLevelSemanticLabeling as tool

    if len(instance_id_files) != len(predictions):
        raise ValueError("instance_id_files and predictions must list the same images")
    workdir = Path(workdir).resolve()
    (workdir / "masks").mkdir(parents=True, exist_ok=True)
    lists = []
    for index, instances in enumerate(predictions):
        lines = []
        for k, (category, mask, score) in enumerate(instances):
            name = f"masks/{index}_{k}.png"
            Image.fromarray(mask.astype(np.uint8) * 255).save(workdir / name)
            lines.append(f"{name} {category} {score}\n")
        lists.append(workdir / f"image{index}.txt")
        lists[-1].write_text("".join(lines))
    args = copy.copy(tool.args)
    args.predictionPath = str(workdir)
    args.gtInstancesFile = str(workdir / "gtInstances.json")
    args.exportFile = str(workdir / "result.json")
    args.quiet, args.JSONOutput = True, False
    cwd = os.getcwd()
    with contextlib.ExitStack() as stack:
        # cityscapesscripts 2.3.0 against NumPy 2.4: np.in1d is gone (np.isin(...).ravel() is
        # its replacement) and its JSON dumps fail on NumPy scalars; patched for this call only
        stack.enter_context(mock.patch.object(np, "in1d", _in1d, create=True))
        stack.enter_context(mock.patch.object(tool, "writeDict2JSON", _write_json))
        stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
        stack.callback(os.chdir, cwd)
        os.chdir(workdir)  # the tool writes matches.json into the working directory
        result = tool.evaluateImgLists(
            [str(p) for p in lists], [str(Path(f).resolve()) for f in instance_id_files], args
        )
    return {
        "ap": result["averages"]["allAp"],
        "ap50": result["averages"]["allAp50%"],
        "per_class": {
            name: {"ap": value["ap"], "ap50": value["ap50%"]}
            for name, value in result["averages"]["classes"].items()
        },
    }
