"""Panoptic datasets in their official layouts, with the training targets of COPS.

:class:`CityscapesPanoptic` reads ``leftImg8bit/{split}/{city}/*_leftImg8bit.png`` and the
panoptic ground truth that cityscapesscripts' ``createPanopticImgs --use-train-id`` writes
(``gtFine/cityscapes_panoptic_{split}_trainId.json`` and its PNG folder) — for the real dataset
and for :func:`gpucops.data.synthetic_cityscapes.write_synthetic_cityscapes` alike.
:class:`CocoPanoptic` reads ``{split}2017/`` images and ``annotations/panoptic_{split}2017.json``
with its PNG folder; its category ids become contiguous class indices in id order (133 classes,
80 things). Local paths only.

Each item holds the image (raw RGB, float32 in 0–255: the network normalises it, see
:class:`gpucops.model.COPSNet`), the full-resolution semantic target, and at the solver's stride
(``array[s//2::s, s//2::s]``, as the official target generator subsamples) the class and segment
maps the AMWC layer and the PQ surrogate take, the void mask, and the affinity targets and weights
of the official code (``aabbas90/COPS``, ``affinityNet/panoptic_affinity/target_generator.py``).
Training augmentation (supplementary Table 2): random scale, random crop, horizontal flip, drawn
from a generator seeded by (seed, epoch, index), so a resumed run sees the same crops.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from .._openmp import threads
from ..grid import cut_maps, edge_weight_maps
from .images import read_image
from .panoptic_files import read_panoptic_json, rgb2id

__all__ = ["CityscapesPanoptic", "CocoPanoptic", "PanopticDataset"]

IGNORE = 255


class PanopticDataset(Dataset):
    """A COCO-panoptic ground truth (JSON + PNG folder) beside its images.

    Args:
        root: the dataset folder.
        split: ``train``, ``val``, …
        distances: D of the affinity targets, relative to the stride-``stride`` grid.
        stride: the solver's grid stride (COPS: 4).
        crop_size: (H, W) of random crops in full-resolution pixels, or None (whole images).
        scale_range: (min, max) random rescale factor before cropping, or None.
        flip: random horizontal flips.
        seed: seed of the augmentation; set ``epoch`` for a new draw per epoch.
        thing_weight: affinity weight of thing pixels (official pre-training 4, fine-tuning 1).
        small_instance_weight, small_instance_area: weight of thing instances smaller than the
            area (full-resolution pixels) in the semantic weights (others 1, void 0), and a factor
            on their affinity weights (official pre-training: 3 below 4096 pixels).
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        distances: tuple[int, ...] = (1, 4, 16, 32, 64),
        stride: int = 4,
        crop_size: tuple[int, int] | None = None,
        scale_range: tuple[float, float] | None = None,
        flip: bool = False,
        seed: int = 0,
        thing_weight: float = 1.0,
        small_instance_weight: float = 1.0,
        small_instance_area: int = 4096,
    ):
        self.root, self.split = Path(root), split
        json_path, image_folder, hint = self._layout()
        if not image_folder.is_dir():
            raise FileNotFoundError(
                f"{self.root} is not a {type(self).__name__} folder: {image_folder} is missing"
            )
        if not json_path.is_file():
            raise FileNotFoundError(f"{json_path} is missing: {hint}")
        document = read_panoptic_json(json_path)
        self.panoptic_folder = json_path.with_suffix("")
        self.annotations = sorted(document["annotations"], key=lambda a: str(a["image_id"]))
        self.image_files = {i["id"]: i["file_name"] for i in document.get("images", [])}
        categories = sorted(document["categories"], key=lambda c: c["id"])
        # dataset category id → contiguous class index (the identity for Cityscapes train ids)
        self.class_of = {c["id"]: k for k, c in enumerate(categories)}
        self.categories = [
            {key: c[key] for key in ("id", "name", "isthing", "color") if key in c}
            for c in categories
        ]
        self.class_names = [c["name"] for c in categories]
        self.partitionable = torch.tensor([bool(c["isthing"]) for c in categories])
        self.num_classes = len(categories)
        self.distances, self.stride = tuple(distances), stride
        self.crop_size, self.scale_range, self.flip = crop_size, scale_range, flip
        self.seed, self.epoch = seed, 0
        self.thing_weight = thing_weight
        self.small_instance_weight, self.small_instance_area = (
            small_instance_weight,
            small_instance_area,
        )

    def _layout(self) -> tuple[Path, Path, str]:
        """(panoptic JSON, image folder, how to make the JSON)."""
        raise NotImplementedError

    def _image_path(self, annotation: dict) -> Path:
        raise NotImplementedError

    def __len__(self) -> int:
        return len(self.annotations)

    def _load(self, annotation: dict) -> tuple[torch.Tensor, torch.Tensor, dict]:
        image_path = self._image_path(annotation)
        panoptic_path = self.panoptic_folder / annotation["file_name"]
        for path in (image_path, panoptic_path):
            if not path.is_file():
                raise FileNotFoundError(f"{path} is missing")
        image = torch.from_numpy(read_image(image_path)).permute(2, 0, 1)
        ids = torch.from_numpy(
            rgb2id(np.array(Image.open(panoptic_path).convert("RGB"))).astype(np.int64)
        )
        # crops and scales would silently misalign an image and a label map of another size
        if tuple(image.shape[1:]) != tuple(ids.shape):
            raise ValueError(
                f"{panoptic_path} is {ids.shape[0]}×{ids.shape[1]} but its image {image_path} is "
                f"{image.shape[1]}×{image.shape[2]}"
            )
        return image, ids, {s["id"]: s for s in annotation["segments_info"]}

    def _augment(
        self, image: torch.Tensor, ids: torch.Tensor, index: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        generator = torch.Generator().manual_seed(
            (self.seed * 1_000_003 + self.epoch) * 1_000_003 + index
        )
        if self.scale_range is not None:
            low, high = self.scale_range
            scale = low + (high - low) * float(torch.rand((), generator=generator))
            size = [max(1, round(s * scale)) for s in image.shape[1:]]
            # on one thread: the vectorised kernel's chunk tails round otherwise, so the image
            # would change in the last bit with the thread count (a DataLoader worker has one)
            with threads(1):
                image = F.interpolate(
                    image[None].float(), size, mode="bilinear", align_corners=False
                )[0]
            ids = F.interpolate(ids[None, None].double(), size, mode="nearest")[0, 0].long()
        if self.crop_size is not None:
            crop_h, crop_w = self.crop_size
            pad_h, pad_w = max(0, crop_h - image.shape[1]), max(0, crop_w - image.shape[2])
            image = F.pad(image.float(), (0, pad_w, 0, pad_h))
            ids = F.pad(ids, (0, pad_w, 0, pad_h))  # padding is void (id 0)
            top = int(torch.randint(0, image.shape[1] - crop_h + 1, (), generator=generator))
            left = int(torch.randint(0, image.shape[2] - crop_w + 1, (), generator=generator))
            image = image[:, top : top + crop_h, left : left + crop_w]
            ids = ids[top : top + crop_h, left : left + crop_w]
        if self.flip and bool(torch.rand((), generator=generator) < 0.5):
            image, ids = image.flip(-1), ids.flip(-1)
        return image.float(), ids

    def __getitem__(self, index: int) -> dict:
        annotation = self.annotations[index]
        image, ids, segments = self._load(annotation)
        image, ids = self._augment(image, ids, index)
        # per pixel: class (255 void), segment (−1 void or crowd), weight
        unique = ids.unique().tolist()
        category = torch.full((max(unique) + 1,), IGNORE, dtype=torch.int64)
        segment = torch.full((max(unique) + 1,), -1, dtype=torch.int64)
        weight = torch.zeros(max(unique) + 1)  # affinity weight of each segment's pixels
        semantic_weight = torch.zeros(max(unique) + 1)
        # id 0 is void; any other id must be listed (else its pixels would silently become void)
        unlisted = [s for s in unique if s != 0 and s not in segments]
        if unlisted:
            raise ValueError(
                f"{self.panoptic_folder / annotation['file_name']} has segment ids "
                f"{unlisted[:5]} that its segments_info does not list"
            )
        for rank, segment_id in enumerate(s for s in unique if s in segments):
            info = segments[segment_id]
            category[segment_id] = self.class_of[info["category_id"]]
            semantic_weight[segment_id] = 1.0
            if info["iscrowd"]:
                continue
            segment[segment_id] = rank
            thing = bool(self.partitionable[category[segment_id]])
            weight[segment_id] = self.thing_weight if thing else 1.0
            if thing and info["area"] < self.small_instance_area:
                weight[segment_id] *= self.small_instance_weight
                semantic_weight[segment_id] = self.small_instance_weight
        semantic = category[ids]
        offset = self.stride // 2
        small = ids[offset :: self.stride, offset :: self.stride]
        classes, segments_small = category[small], segment[small]
        void = classes == IGNORE
        return {
            "image": image,
            "semantic": semantic,
            "semantic_weight": semantic_weight[ids],
            "classes": torch.where(void, -1, classes),
            "segments": segments_small,
            "void": void,
            "affinity_target": cut_maps(segments_small[None], self.distances)[0],
            "affinity_weight": edge_weight_maps(weight[small][None], self.distances)[0],
            "image_id": annotation["image_id"],
        }


class CityscapesPanoptic(PanopticDataset):
    """Cityscapes panoptic with train ids (19 classes, 8 things); see :class:`PanopticDataset`."""

    def _layout(self) -> tuple[Path, Path, str]:
        return (
            self.root / "gtFine" / f"cityscapes_panoptic_{self.split}_trainId.json",
            self.root / "leftImg8bit" / self.split,
            "run cityscapesscripts' createPanopticImgs --use-train-id on the dataset first",
        )

    def _image_path(self, annotation: dict) -> Path:
        image_id = annotation["image_id"]
        city = image_id.split("_")[0]
        return self.root / "leftImg8bit" / self.split / city / f"{image_id}_leftImg8bit.png"


class CocoPanoptic(PanopticDataset):
    """COCO panoptic (133 classes, 80 things); see :class:`PanopticDataset`."""

    def _layout(self) -> tuple[Path, Path, str]:
        return (
            self.root / "annotations" / f"panoptic_{self.split}2017.json",
            self.root / f"{self.split}2017",
            "unpack COCO's panoptic annotations into annotations/",
        )

    def _image_path(self, annotation: dict) -> Path:
        name = self.image_files.get(annotation["image_id"])
        if name is None:
            name = Path(annotation["file_name"]).with_suffix(".jpg").name
        return self.root / f"{self.split}2017" / name
