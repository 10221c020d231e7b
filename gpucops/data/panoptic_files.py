"""COCO-panoptic files: a PNG whose colour encodes the segment id (``id = R + 256·G + 256²·B``,
0 = void) plus a JSON with ``segments_info`` (category id, area, bbox, iscrowd) per image.

This is the format of COCO panoptic and of the panoptic ground truth that cityscapesscripts'
``createPanopticImgs`` writes, and what both official evaluators read.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

__all__ = [
    "id2rgb",
    "labeling_to_panoptic",
    "read_panoptic_json",
    "read_panoptic_png",
    "rgb2id",
    "segments_info",
    "write_panoptic_json",
    "write_panoptic_png",
]


def rgb2id(color: np.ndarray) -> np.ndarray:
    """``[H, W, 3]`` uint8 colours → ``[H, W]`` uint32 segment ids."""
    color = color.astype(np.uint32)
    return color[..., 0] + 256 * color[..., 1] + 256 * 256 * color[..., 2]


def id2rgb(ids: np.ndarray) -> np.ndarray:
    """``[H, W]`` segment ids (< 256³) → ``[H, W, 3]`` uint8 colours."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= 256**3):
        raise ValueError(f"segment ids must lie in [0, 256³), got [{ids.min()}, {ids.max()}]")
    return np.stack([ids % 256, ids // 256 % 256, ids // 65536], axis=-1).astype(np.uint8)


def write_panoptic_png(path: str | Path, ids: np.ndarray | torch.Tensor) -> None:
    """Write segment ids ``[H, W]`` (0 = void) as a COCO-panoptic PNG."""
    if isinstance(ids, torch.Tensor):
        ids = ids.cpu().numpy()
    Image.fromarray(id2rgb(ids)).save(path)


def read_panoptic_png(path: str | Path) -> np.ndarray:
    """``[H, W]`` uint32 segment ids of a COCO-panoptic PNG."""
    return rgb2id(np.asarray(Image.open(path).convert("RGB")))


def segments_info(ids: np.ndarray, categories: dict[int, int], crowd: set[int] = frozenset()):
    """``segments_info`` entries for every non-void id of ``ids`` (``categories``: id → category
    id; ``crowd``: ids marked iscrowd), with area and bbox as cityscapesscripts computes them."""
    info = []
    for segment in np.unique(ids):
        if segment == 0:
            continue
        mask = ids == segment
        rows, cols = np.nonzero(mask.any(axis=1))[0], np.nonzero(mask.any(axis=0))[0]
        info.append(
            {
                "id": int(segment),
                "category_id": int(categories[int(segment)]),
                "area": int(mask.sum()),
                "bbox": [int(cols[0]), int(rows[0]), int(cols[-1] - cols[0] + 1),
                         int(rows[-1] - rows[0] + 1)],
                "iscrowd": int(int(segment) in crowd),
            }
        )  # fmt: skip
    return info


def labeling_to_panoptic(
    classes: torch.Tensor,
    segments: torch.Tensor,
    category_ids: list[int] | torch.Tensor,
    keep: torch.Tensor | None = None,
) -> tuple[np.ndarray, dict[int, int]]:
    """A solver labeling of one image → (segment ids ``[H, W]`` starting at 1, 0 = void; a map
    segment id → category id). ``category_ids[k]`` is the dataset's id of class k (e.g. the
    Cityscapes label id of a train id); ``keep [H, W]`` bool marks pixels to keep (others void,
    e.g. segments dropped by the post-processing)."""
    category_ids = torch.as_tensor(category_ids, dtype=torch.int64)
    segments, classes = segments.cpu(), classes.cpu()
    ids = segments + 1
    if keep is not None:
        ids = torch.where(keep.cpu(), ids, 0)
    present = ids.flatten().unique()
    first_class = torch.zeros(int(ids.max()) + 1 if ids.numel() else 1, dtype=torch.int64)
    first_class[ids.flatten()] = classes.flatten()
    categories = {int(i): int(category_ids[first_class[i]]) for i in present if i != 0}
    return ids.numpy().astype(np.uint32), categories


def write_panoptic_json(path: str | Path, annotations: list[dict], categories: list[dict],
                        images: list[dict] | None = None) -> None:  # fmt: skip
    """Write a COCO-panoptic JSON (``annotations``: ``image_id``, ``file_name``,
    ``segments_info``)."""
    document = {"annotations": annotations, "categories": categories}
    if images is not None:
        document["images"] = images
    Path(path).write_text(json.dumps(document, indent=1, sort_keys=True))


def read_panoptic_json(path: str | Path) -> dict:
    """The parsed COCO-panoptic JSON, with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"panoptic JSON {path} does not exist")
    try:
        document = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"panoptic JSON {path} is not valid JSON: {error}") from error
    for key in ("annotations", "categories"):
        if key not in document:
            raise ValueError(f"panoptic JSON {path} has no {key!r} list")
    return document
