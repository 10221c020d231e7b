"""A seeded synthetic street-scene dataset in the Cityscapes layout, with no download.

Scenes come from :func:`gpucops.synthetic.make_scene` (sky, skyline of buildings, vegetation and
walls, a road with sidewalks and terrain, poles with signs, cars, people, bikes… that occlude one
another, some touching, some small). This writes, for each image,

* ``leftImg8bit/{split}/{city}/{name}_leftImg8bit.png`` — a textured RGB picture (class colours
  with spatially correlated texture, a tint per instance, pixel noise);
* ``gtFine/{split}/{city}/{name}_gtFine_labelIds.png`` and ``…_instanceIds.png`` — Cityscapes
  label ids, and instance ids (``label id · 1000 + k`` for thing instances, the label id for stuff
  and for crowd regions); void: an ego-vehicle band at the bottom (id 1) and unlabeled blobs (0);

then calls cityscapesscripts' ``createPanopticImgs`` (not a rewrite of it) for both the label-id
and the train-id panoptic ground truth (``gtFine/cityscapes_panoptic_{split}[_trainId].json``
and PNG folders), exactly as for the real dataset.
"""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm import tqdm

from ..synthetic import make_scene

__all__ = ["write_synthetic_cityscapes"]


def _label_tables() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per train id (0–18): Cityscapes label id, colour, and whether it has instances."""
    from cityscapesscripts.helpers.labels import trainId2label

    labels = [trainId2label[t] for t in range(19)]
    return (
        np.array([label.id for label in labels]),
        np.array([label.color for label in labels], dtype=np.float32),
        np.array([label.hasInstances for label in labels]),
    )


def _texture(generator: torch.Generator, height: int, width: int, cell: int) -> np.ndarray:
    coarse = torch.rand(1, 1, max(2, height // cell), max(2, width // cell), generator=generator)
    return F.interpolate(coarse, (height, width), mode="bilinear", align_corners=False)[
        0, 0
    ].numpy()


def _draw_image(
    generator: torch.Generator, classes: np.ndarray, instances: np.ndarray, colors: np.ndarray
) -> np.ndarray:
    height, width = classes.shape
    image = colors[classes]
    image *= (0.75 + 0.5 * _texture(generator, height, width, 8))[..., None]
    tints = 0.8 + 0.4 * torch.rand(int(instances.max()) + 2, 3, generator=generator).numpy()
    image *= np.where((instances >= 0)[..., None], tints[instances + 1], 1.0)
    image += 8 * torch.randn(height, width, 3, generator=generator).numpy()
    return np.clip(image, 0, 255).astype(np.uint8)


def _annotate(
    generator: torch.Generator,
    classes: np.ndarray,
    segments: np.ndarray,
    label_ids: np.ndarray,
    has_instances: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Label ids, instance ids and the thing-instance index per pixel (−1 elsewhere)."""
    labels = label_ids[classes]
    thing = has_instances[classes]
    instance_ids = labels.copy()
    instance_index = np.full(classes.shape, -1)
    for k, segment in enumerate(np.unique(segments[thing])):
        mask = segments == segment
        instance_index[mask] = k
        # now and then a group is annotated as a crowd region (label id only, no instance)
        crowd = float(torch.rand((), generator=generator)) < 0.05
        instance_ids[mask] = labels[mask] if crowd else labels[mask] * 1000 + k
    height, width = classes.shape
    # void: the ego vehicle's bonnet at the bottom, unlabeled blobs
    ego = max(1, height // 16)
    for array in (labels, instance_ids):
        array[-ego:] = 1
    blobs = _texture(generator, height, width, 16) > 0.93
    for array in (labels, instance_ids):
        array[blobs] = 0
    return labels.astype(np.uint8), instance_ids.astype(np.uint16), instance_index


def write_synthetic_cityscapes(
    root: str | Path,
    num_images: int = 8,
    height: int = 256,
    width: int = 512,
    split: str = "train",
    seed: int = 0,
    city: str = "synthetic",
    progress: bool = True,
) -> Path:
    """Write a synthetic dataset of ``num_images`` scenes of ``height × width`` under ``root``
    in the Cityscapes layout (see the module docstring) and return ``root``.

    Image i is drawn from a generator seeded by (seed, i), so it does not depend on
    ``num_images``.
    """
    if num_images < 1 or height < 16 or width < 16:
        raise ValueError(
            f"need num_images ≥ 1 and an image of at least 16×16, got {num_images}, "
            f"{height}×{width}"
        )
    root = Path(root)
    images = root / "leftImg8bit" / split / city
    annotations = root / "gtFine" / split / city
    images.mkdir(parents=True, exist_ok=True)
    annotations.mkdir(parents=True, exist_ok=True)
    label_ids, colors, has_instances = _label_tables()
    for i in tqdm(range(num_images), desc=f"synthetic {split}", disable=not progress):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + i)
        classes, segments = (x.numpy() for x in make_scene(height, width, 19, generator))
        labels, instance_ids, instance_index = _annotate(
            generator, classes, segments, label_ids, has_instances
        )
        name = f"{city}_{seed:06d}_{i:06d}"
        Image.fromarray(_draw_image(generator, classes, instance_index, colors)).save(
            images / f"{name}_leftImg8bit.png"
        )
        Image.fromarray(labels).save(annotations / f"{name}_gtFine_labelIds.png")
        Image.fromarray(instance_ids).save(annotations / f"{name}_gtFine_instanceIds.png")
    from cityscapesscripts.preparation.createPanopticImgs import convert2panoptic

    for use_train_id in (False, True):
        report = io.StringIO()  # it prints a line per file; on failure it prints and exits
        try:
            with contextlib.redirect_stdout(report):
                convert2panoptic(str(root / "gtFine"), str(root / "gtFine"), use_train_id, [split])
        except SystemExit as error:
            raise RuntimeError(f"createPanopticImgs failed:\n{report.getvalue()}") from error
    return root
