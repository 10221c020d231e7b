"""``gpucops predict``: panoptic predictions for a folder of images with a trained checkpoint.

Reads every ``.png``/``.jpg``/``.jpeg`` of ``--images`` and its subfolders (sorted by path;
images of one size are batched), runs the network and the AMWC solver, and writes to ``--out``,
under each image's folder relative to ``--images`` (Cityscapes: its city), ``panoptic/<name>.png``
+ ``panoptic.json`` (COCO panoptic; category ids and names from the checkpoint — what
``train/train.py`` stored from its dataset — or from ``--categories``; each thing segment with
its instance score, supplementary eq. 12), ``semantic/<name>.png`` (the semantic head's argmax
as 8-bit category ids: the input of the official Cityscapes mIoU) and ``overlays/<name>.png``
(image | prediction, and | ground truth given ``--gt-json``/``--gt-dir``; titled, with a legend of
the classes shown).
Image ids are the file names without extension (and without Cityscapes' ``_leftImg8bit``), so
``gpucops evaluate`` pairs them with the ground truth; segments smaller than ``--thing-area`` /
``--stuff-area`` pixels become void, as in COPS' inference.

By default the solver runs on the network's stride-4 grid and the labels are upsampled ×4 (as
COPS does). ``--full-resolution`` solves on the image's own grid instead: the stride-4 costs
upsampled ×4 (bilinear) and the distances ×4 so they span the same image distances, plus the
distance-1 edges (see :mod:`gpucops.inference`).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from itertools import groupby
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

from ..data import (
    PanopticWriter,
    read_image,
    read_panoptic_json,
    read_panoptic_png,
    write_label_png,
)
from ..data.images import image_size
from ..data.panoptic_files import file_in
from ..inference import Predictor, available_memory, remove_small_segments
from ..metrics import instance_scores
from ..visualize import save_comparison

__all__ = [
    "HELP", "add_arguments", "add_inference_arguments", "find_images", "image_id",
    "output_folder", "resolve_device", "run",
]  # fmt: skip

EXTENSIONS = (".png", ".jpg", ".jpeg")


def resolve_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else the CPU; a clear error for CUDA without a GPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ValueError(
            f"--device {name!r} is not a device: use auto, cpu, cuda or cuda:N"
        ) from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available")
    return device


def output_folder(path: str | Path, option: str = "--out") -> Path:
    """The output folder ``path``, created if missing; one line naming ``option`` when something
    that is not a folder is in its place."""
    folder = Path(path)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{option} {folder} is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def find_images(folder: str | Path) -> list[Path]:
    """The images of ``folder`` and its subfolders (by extension, sorted by relative path, e.g.
    Cityscapes' ``leftImg8bit/val/<city>/``); errors for a missing or empty folder and for two
    images with one id (their outputs and ground truth would be confused)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise NotADirectoryError(f"--images {folder} is not a folder")
    paths = sorted(
        p for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and p.is_file()
    )  # fmt: skip
    if not paths:
        raise ValueError(f"--images {folder} holds no {'/'.join(EXTENSIONS)} files")
    first: dict[str, Path] = {}
    for path in paths:
        other = first.setdefault(image_id(path), path)
        if other != path:
            raise ValueError(
                f"--images: {other} and {path} have the same image id {image_id(path)!r} "
                "(ids are file names without extension and must be unique)"
            )
    return paths


def image_id(path: Path) -> str:
    """The image id of an image file: its name without extension and without Cityscapes'
    ``_leftImg8bit`` suffix (so predictions meet the ground truth's ids)."""
    return path.stem.removesuffix("_leftImg8bit")


def _batches(paths: list[Path], sizes: dict[Path, tuple[int, int]], batch_size: int):
    """Batches of (paths, images, uint8 [B, 3, H, W]) with one size each, in name order per
    size. ``sizes``: each path's ``(H, W)`` (``image_size``, from the file headers); each
    batch's pixels are read when it is due, so memory holds one batch, not the folder."""
    ordered = sorted(paths, key=sizes.__getitem__)  # stable: name order within a size
    for _, group in groupby(ordered, key=sizes.__getitem__):
        group = list(group)
        for start in range(0, len(group), batch_size):
            chunk = group[start : start + batch_size]
            images = [read_image(path) for path in chunk]
            stacked = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)
            yield chunk, images, stacked


def _fits(size: tuple[int, int], distances: tuple[int, ...]) -> bool:
    """Whether an image of ``size`` has a stride-grid edge of every distance (the solver needs
    each distance shorter than the grid's height or width; at full resolution the same holds
    ×stride)."""
    cells = max(-(-side // Predictor.STRIDE) for side in size)
    return max(distances) < cells


def _check_memory(
    predictor: Predictor, paths: list[Path], sizes: dict[Path, tuple[int, int]], args
) -> None:
    """Refuse, before any work, a batch that the device's memory cannot hold (the estimate of
    :meth:`Predictor.memory_estimate`), naming the first image of that size and what would fit."""
    available = available_memory(predictor.device)
    if available is None:
        return
    counts = Counter(sizes[path] for path in paths)
    first = {}
    for path in paths:
        first.setdefault(sizes[path], path)
    for size, path in first.items():
        batch = min(args.batch_size, counts[size])
        need = predictor.memory_estimate(*size, batch, args.full_resolution)
        if need <= available:
            continue
        single = predictor.memory_estimate(*size, 1, args.full_resolution)
        remedy = "--batch-size 1" if single <= available else "a smaller image"
        if args.full_resolution and single > available:
            remedy = "stride 4 (without --full-resolution) or a smaller image"
        raise ValueError(
            f"{path}: {batch} image(s) of {size[0]}×{size[1]} pixels need about "
            f"{need / 2**30:.1f} GB on {predictor.device} but {available / 2**30:.1f} GB is "
            f"available; use {remedy}"
        )


class GroundTruth:
    """The ground-truth labeling of an image id for the overlays: a COCO-panoptic JSON and its
    PNG folder, category ids mapped to the checkpoint's class indices (others drawn void)."""

    def __init__(self, gt_json: str | Path, gt_dir: str | Path, categories: list[dict]):
        if not Path(gt_dir).is_dir():
            raise NotADirectoryError(f"--gt-dir {gt_dir} is not a folder")
        self.json, self.folder = Path(gt_json), Path(gt_dir)
        annotations = read_panoptic_json(gt_json)["annotations"]
        self.annotations = {str(a["image_id"]): a for a in annotations}
        self.index = {c["id"]: k for k, c in enumerate(categories)}
        used = {s["category_id"] for a in annotations for s in a["segments_info"]}
        if used and self.index and not used & self.index.keys():
            # every panel would be void: most likely label ids against a checkpoint of train ids
            raise ValueError(
                f"--gt-json {gt_json}: its category ids ({min(used)}–{max(used)}) are none of "
                f"the checkpoint's classes' ids ({min(self.index)}–{max(self.index)}); give the "
                f"ground truth in the checkpoint's ids (Cityscapes: the *_trainId.json)"
            )

    def __call__(self, image_id: str, size: tuple[int, int]):
        """``(classes, segments)`` ``[H, W]`` of ``image_id`` (None: not in the ground truth or
        of another size than the image)."""
        annotation = self.annotations.get(image_id)
        if annotation is None:
            return None
        ids = read_panoptic_png(file_in(self.folder, annotation["file_name"], self.json))
        if ids.shape != size:
            return None
        lookup = {s["id"]: self.index.get(s["category_id"], -1)
                  for s in annotation["segments_info"]}  # fmt: skip
        # one lookup a segment, not a Python call a pixel (np.vectorize: 0.33 s at 1024×2048,
        # this 0.05 s)
        segment_ids, inverse = np.unique(ids, return_inverse=True)
        per_segment = np.array([lookup.get(int(s), -1) for s in segment_ids], dtype=np.int64)
        classes = per_segment[inverse].reshape(ids.shape)
        return torch.from_numpy(classes), torch.from_numpy(ids.astype(np.int64))


def run(args: argparse.Namespace) -> None:
    if args.batch_size < 1:
        raise ValueError(f"--batch-size must be ≥ 1, got {args.batch_size}")
    for option, area in (("--thing-area", args.thing_area), ("--stuff-area", args.stuff_area)):
        if not area >= 0:
            raise ValueError(f"{option} must be a number of pixels ≥ 0, got {area}")
    paths = find_images(args.images)
    # outputs keep each image's folder below --images (Cityscapes: one per city)
    subfolders = {path: path.parent.relative_to(args.images) for path in paths}
    categories = None
    if args.categories:
        categories = sorted(
            read_panoptic_json(args.categories)["categories"], key=lambda c: c["id"]
        )
    predictor = Predictor(args.checkpoint, resolve_device(args.device), categories)
    if (args.gt_json is None) != (args.gt_dir is None):
        raise ValueError("--gt-json and --gt-dir go together (the ground truth's JSON and PNGs)")
    truth = None if args.gt_json is None else GroundTruth(
        args.gt_json, args.gt_dir, predictor.categories
    )  # fmt: skip
    class_names = [c.get("name", str(c["id"])) for c in predictor.categories]
    out = output_folder(args.out)
    writer = PanopticWriter(out / "panoptic", predictor.categories)
    # an interrupted run's finished images are kept: predict the others
    pending = [path for path in paths if image_id(path) not in writer.done]
    # an image too small for the network's edge distances is skipped with a line, so that one
    # thumbnail does not abort a whole folder (sizes from the file headers)
    sizes = {path: image_size(path) for path in pending}
    small = [path for path in pending if not _fits(sizes[path], predictor.distances)]
    for path in small:
        height, width = sizes[path]
        tqdm.write(
            f"skipped {path}: {height}×{width} pixels is too small for the edge distances "
            f"{predictor.distances} (the stride-{Predictor.STRIDE} grid needs more than "
            f"{max(predictor.distances)} cells along one side)",
            file=sys.stderr,
        )
    skipped = set(small)
    pending = [path for path in pending if path not in skipped]
    _check_memory(predictor, pending, sizes, args)
    seconds = {"model": 0.0, "solver": 0.0}
    # the semantic head's argmax as category ids (the official Cityscapes mIoU's input)
    category_ids = torch.tensor([c["id"] for c in predictor.categories])
    with tqdm(
        total=len(paths), initial=len(paths) - len(pending), unit="image", desc="predicting"
    ) as bar:
        for names, images, batch in _batches(pending, sizes, args.batch_size):
            prediction = predictor(batch, full_resolution=args.full_resolution)
            classes_batch = prediction.labeling.classes.cpu()
            segments_batch = remove_small_segments(
                classes_batch, prediction.labeling.segments.cpu(), predictor.partitionable,
                args.thing_area, args.stuff_area,
            )  # fmt: skip
            for key in seconds:
                seconds[key] += prediction.seconds[key]
            semantic = F.interpolate(
                prediction.semantic_logits, scale_factor=Predictor.STRIDE, mode="bilinear",
                align_corners=False,
            )[..., : batch.shape[-2], : batch.shape[-1]]  # fmt: skip
            semantic_ids = category_ids[semantic.argmax(1).cpu()]
            for index, (path, image) in enumerate(zip(names, images, strict=True)):
                classes, segments = classes_batch[index], segments_batch[index]
                write_label_png(
                    out / "semantic" / subfolders[path] / f"{image_id(path)}.png",
                    semantic_ids[index],
                )  # before the panoptic PNG: an image the writer has done has both
                scores = instance_scores(
                    semantic[index].cpu(), prediction.affinity_logits[index].cpu(), classes,
                    segments, predictor.partitionable, predictor.distances, Predictor.STRIDE,
                )  # fmt: skip
                writer.add(
                    image_id(path), classes, segments, {s: score for s, _, score in scores},
                    subfolders[path],
                )  # fmt: skip
                if not args.no_overlays:
                    panels = [(classes, segments)]
                    known = truth and truth(image_id(path), image.shape[:2])
                    panels += [known] if known else []
                    titles = ["image", "prediction", "ground truth"][: len(panels) + 1]
                    save_comparison(
                        out / "overlays" / subfolders[path] / f"{image_id(path)}.png", image,
                        panels, predictor.partitionable, titles, class_names,
                    )  # fmt: skip
                bar.update(1)
    json_path = writer.close()
    count = max(1, len(pending))
    kept = len(paths) - len(pending) - len(small)
    notes = f", {kept} kept from an interrupted run" if kept else ""
    notes += f", {len(small)} too small, skipped" if small else ""
    print(
        f"{len(paths)} images → {json_path} and {writer.folder}/ "
        f"({'full resolution' if args.full_resolution else 'stride 4'}, {predictor.device}; "
        f"model {seconds['model'] / count:.3f} s/image, solver {seconds['solver'] / count:.3f} "
        f"s/image{notes})"
    )


HELP = "panoptic predictions (PNG + JSON, overlays) for a folder of images"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--checkpoint", required=True, help="checkpoint.pt of train/train.py")
    parser.add_argument(
        "--images", required=True, help="folder of .png/.jpg/.jpeg images (subfolders included)"
    )
    parser.add_argument("--out", required=True, help="output folder")
    add_inference_arguments(parser)
    parser.add_argument(
        "--categories",
        help="a COCO-panoptic JSON whose categories name the checkpoint's classes (default: "
        "those stored in the checkpoint)",
    )
    parser.add_argument("--no-overlays", action="store_true", help="skip the overlay pictures")
    parser.add_argument(
        "--gt-json", help="a COCO-panoptic ground truth (with --gt-dir): adds its panel to the "
        "overlays of the images it holds",
    )  # fmt: skip
    parser.add_argument("--gt-dir", help="the folder of --gt-json's PNGs")


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of how a checkpoint predicts (``predict`` and ``evaluate --checkpoint``)."""
    parser.add_argument(
        "--full-resolution", action="store_true",
        help="solve on the image's own grid instead of the stride-4 grid",
    )  # fmt: skip
    parser.add_argument(
        "--device", default="auto", help="auto (CUDA if available), cpu, cuda, cuda:1, …"
    )
    parser.add_argument("--batch-size", type=int, default=4, help="images per batch (default: 4)")
    parser.add_argument(
        "--thing-area", type=float, default=200,
        help="thing segments below this many pixels become void (default: 200, Cityscapes)",
    )  # fmt: skip
    parser.add_argument(
        "--stuff-area", type=float, default=2048,
        help="stuff segments below this many pixels become void (default: 2048, Cityscapes; "
        "COCO: 4096)",
    )  # fmt: skip
