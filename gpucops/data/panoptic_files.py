"""COCO-panoptic files: a PNG whose colour encodes the segment id (``id = R + 256·G + 256²·B``,
0 = void) plus a JSON with ``segments_info`` (category id, area, bbox, iscrowd) per image.

This is the format of COCO panoptic and of the panoptic ground truth that cityscapesscripts'
``createPanopticImgs`` writes, and what both official evaluators read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .images import open_image

__all__ = [
    "PanopticWriter",
    "file_in",
    "id2rgb",
    "labeling_to_panoptic",
    "panoptic_pairs",
    "panoptic_segments",
    "read_label_png",
    "read_panoptic_json",
    "read_panoptic_png",
    "rgb2id",
    "segments_info",
    "write_label_png",
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
    """Write segment ids ``[H, W]`` (0 = void) as a COCO-panoptic PNG (atomically: a reader never
    sees half a file)."""
    if isinstance(ids, torch.Tensor):
        ids = ids.cpu().numpy()
    _save_png(path, id2rgb(ids))


def write_label_png(path: str | Path, labels: np.ndarray | torch.Tensor) -> None:
    """Write a class map ``[H, W]`` of category ids (0…255; e.g. Cityscapes' label or train ids)
    as an 8-bit grey PNG, atomically, its folder created."""
    if isinstance(labels, torch.Tensor):
        labels = labels.cpu().numpy()
    if labels.size and (labels.min() < 0 or labels.max() > 255):
        raise ValueError(f"{path}: category ids must lie in 0…255 for an 8-bit label PNG")
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _save_png(path, labels.astype(np.uint8))


def read_label_png(path: str | Path) -> np.ndarray:
    """The class map ``[H, W]`` int64 of a label PNG (:func:`write_label_png`)."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"label PNG {path} does not exist")
    return np.asarray(open_image(path, "label PNG").convert("L"), dtype=np.int64)


def _save_png(path: str | Path, pixels: np.ndarray) -> None:
    """Save ``pixels`` as a PNG at ``path`` through a temporary file (a reader never sees half
    a file)."""
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial")
    Image.fromarray(pixels).save(temporary, format="PNG")
    os.replace(temporary, path)


def read_panoptic_png(path: str | Path) -> np.ndarray:
    """``[H, W]`` uint32 segment ids of a COCO-panoptic PNG; an unreadable file is a
    ``ValueError`` naming it."""
    return rgb2id(np.asarray(open_image(path, "panoptic PNG").convert("RGB")))


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


def panoptic_segments(
    classes: torch.Tensor, segments: torch.Tensor, category_ids: list[int]
) -> tuple[np.ndarray, list[dict]]:
    """One labeling ``[H, W]`` (segment −1 = void) as COCO-panoptic segment ids (0 = void) and
    their ``segments_info`` (class k written as ``category_ids[k]``)."""
    ids, categories = labeling_to_panoptic(classes, segments, category_ids, keep=segments >= 0)
    return ids, segments_info(ids, categories)


def write_panoptic_json(path: str | Path, annotations: list[dict], categories: list[dict],
                        images: list[dict] | None = None) -> None:  # fmt: skip
    """Write a COCO-panoptic JSON (``annotations``: ``image_id``, ``file_name``,
    ``segments_info``), atomically."""
    document = {"annotations": annotations, "categories": categories}
    if images is not None:
        document["images"] = images
    path = Path(path)
    temporary = path.with_name(f".{path.name}.partial")
    temporary.write_text(json.dumps(document, indent=1, sort_keys=True))
    os.replace(temporary, path)


_ANNOTATION_KEYS = ("image_id", "file_name", "segments_info")
_CATEGORY_KEYS = ("id", "isthing")


def read_panoptic_json(path: str | Path) -> dict:
    """The parsed COCO-panoptic JSON, with a clear error for a missing or malformed file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"panoptic JSON {path} does not exist")
    try:
        document = json.loads(path.read_bytes())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:  # both are ValueErrors
        raise ValueError(f"panoptic JSON {path} is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise ValueError(f"panoptic JSON {path} is not a JSON object")
    for key, fields in (("annotations", _ANNOTATION_KEYS), ("categories", _CATEGORY_KEYS)):
        if not isinstance(document.get(key), list):
            raise ValueError(f"panoptic JSON {path} has no {key!r} list")
        for index, entry in enumerate(document[key]):
            missing = [name for name in fields if not isinstance(entry, dict) or name not in entry]
            if missing:
                raise ValueError(f"panoptic JSON {path}: {key}[{index}] has no {missing[0]!r}")
    return document


def file_in(folder: str | Path, name: object, document: str | Path) -> Path:
    """``folder / name`` for a ``file_name`` read from ``document``; a name that would leave the
    folder (absolute, or with a ``..`` part) is refused: a JSON must not make the reader open
    files elsewhere."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"{document}: a file_name must be a non-empty string, got {name!r}")
    relative = Path(name)
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError(f"{document}: file_name {name!r} leaves the folder {folder}")
    return Path(folder) / relative


def panoptic_pairs(
    gt_json: str | Path, gt_dir: str | Path, pred_json: str | Path, pred_dir: str | Path
) -> tuple[list[dict], Iterator[tuple[dict, np.ndarray, dict, np.ndarray]]]:
    """The ground truth's ``categories`` and, lazily, per ground-truth image: (ground-truth
    annotation, its segment ids ``[H, W]``, the prediction's annotation, its segment ids) — the
    inputs of the official panoptic evaluation. Every ground-truth image needs a prediction of
    its size, with its ``image_id`` or else a PNG of the same name (COCO's integer ids)."""
    gt_document, pred_document = read_panoptic_json(gt_json), read_panoptic_json(pred_json)
    by_id = {a["image_id"]: a for a in pred_document["annotations"]}
    by_name = {Path(a["file_name"]).stem: a for a in pred_document["annotations"]}

    def prediction(gt_annotation: dict) -> dict | None:
        found = by_id.get(gt_annotation["image_id"])
        return found if found is not None else by_name.get(Path(gt_annotation["file_name"]).stem)

    missing = [a["image_id"] for a in gt_document["annotations"] if prediction(a) is None]
    if missing:
        raise ValueError(f"{pred_json} has no prediction for the image(s) {missing[:5]}")

    def pairs() -> Iterator[tuple[dict, np.ndarray, dict, np.ndarray]]:
        for gt_annotation in gt_document["annotations"]:
            pred_annotation = prediction(gt_annotation)
            gt_ids = read_panoptic_png(file_in(gt_dir, gt_annotation["file_name"], gt_json))
            pred_ids = read_panoptic_png(file_in(pred_dir, pred_annotation["file_name"], pred_json))
            if gt_ids.shape != pred_ids.shape:
                raise ValueError(
                    f"prediction {pred_annotation['file_name']} is {pred_ids.shape[0]}×"
                    f"{pred_ids.shape[1]}, its ground truth {gt_ids.shape[0]}×{gt_ids.shape[1]}"
                )
            yield gt_annotation, gt_ids, pred_annotation, pred_ids

    return gt_document["categories"], pairs()


class PanopticWriter:
    """Writes the predictions of a dataset as COCO-panoptic files: a PNG per image into
    ``folder`` and, on :meth:`close`, one JSON at ``json_path`` (``folder`` + ``.json`` by
    default) listing every image's ``segments_info``.

    Nothing is lost to an interruption: each finished image is appended to a journal
    (``json_path`` + ``.partial.jsonl``) right after its PNG; a writer opened on the same paths
    takes the journal's images up (:attr:`done`, so a re-run can skip them), and :meth:`close`
    writes the JSON of all of them and removes the journal.

    Args:
        folder: where the PNGs go (created).
        categories: the dataset's categories in class order (``id``, ``name``, ``isthing``):
            class k of a labeling is written as ``categories[k]["id"]``.
    """

    def __init__(
        self, folder: str | Path, categories: list[dict], json_path: str | Path | None = None
    ):
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.json_path = (
            Path(json_path) if json_path is not None else self.folder.with_suffix(".json")
        )
        self.categories = list(categories)
        self.annotations: list[dict] = []
        self.images: list[dict] = []
        self.journal = self.json_path.with_name(self.json_path.name + ".partial.jsonl")
        if self.journal.is_file():
            for line in self.journal.read_text().splitlines():
                try:
                    annotation, image = json.loads(line)
                except ValueError:  # a line cut short by the interruption: redo that image
                    continue
                if (self.folder / annotation["file_name"]).is_file():
                    self.annotations.append(annotation)
                    self.images.append(image)

    @property
    def done(self) -> set[str]:
        """The ids of the images already written (by this writer or an interrupted one)."""
        return {annotation["image_id"] for annotation in self.annotations}

    def add(
        self,
        image_id: str,
        classes: torch.Tensor,
        segments: torch.Tensor,
        scores: dict[int, float] | None = None,
        subfolder: str | Path = "",
    ) -> Path:
        """Add one labeling (``classes``, ``segments`` ``[H, W]``; segment −1 = void) with
        optional instance ``scores`` by segment (written as ``score`` in ``segments_info``);
        the PNG goes to ``folder/subfolder`` (``file_name`` relative to ``folder``, e.g. the
        city of a Cityscapes image); returns the PNG's path."""
        ids, info = panoptic_segments(classes, segments, [c["id"] for c in self.categories])
        for entry in info:  # panoptic ids are segment + 1
            if scores is not None and entry["id"] - 1 in scores:
                entry["score"] = float(scores[entry["id"] - 1])
        name = (Path(subfolder) / f"{image_id}.png").as_posix()
        (self.folder / name).parent.mkdir(parents=True, exist_ok=True)
        write_panoptic_png(self.folder / name, ids)
        annotation = {"image_id": image_id, "file_name": name, "segments_info": info}
        height, width = ids.shape
        image = {"id": image_id, "file_name": name, "height": height, "width": width}
        with self.journal.open("a") as handle:
            handle.write(json.dumps([annotation, image]) + "\n")
        self.annotations.append(annotation)
        self.images.append(image)
        return self.folder / name

    def close(self) -> Path:
        """Write the JSON (atomically) and remove the journal; returns the JSON's path."""
        write_panoptic_json(self.json_path, self.annotations, self.categories, self.images)
        self.journal.unlink(missing_ok=True)
        return self.json_path
