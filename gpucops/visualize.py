"""Pictures of panoptic labelings: stuff in its class colour, each thing instance in its own
shade of its class colour, segment boundaries in black, over the image; side by side with the
ground truth, each panel under its title, with a legend of the classes shown."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

__all__ = ["CITYSCAPES_PALETTE", "comparison", "panoptic_colors", "save_comparison"]

# Cityscapes colours of the 19 train ids
CITYSCAPES_PALETTE = np.array(
    [
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
        (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ],
    dtype=np.uint8,
)  # fmt: skip


def _palette(num_classes: int) -> np.ndarray:
    if num_classes <= len(CITYSCAPES_PALETTE):
        return CITYSCAPES_PALETTE[:num_classes].astype(np.float32)
    rng = np.random.default_rng(0)  # any K: fixed distinct-ish colours
    return rng.integers(40, 256, (num_classes, 3)).astype(np.float32)


def panoptic_colors(
    classes: torch.Tensor | np.ndarray,
    segments: torch.Tensor | np.ndarray,
    partitionable: torch.Tensor | np.ndarray,
    image: np.ndarray | None = None,
    alpha: float = 0.6,
) -> np.ndarray:
    """``[H, W, 3]`` uint8 picture of one labeling (``classes``, ``segments`` ``[H, W]``, class
    −1 or 255 = void, drawn black), blended over ``image [H, W, 3]`` uint8 with ``alpha``."""
    classes, segments = np.asarray(classes), np.asarray(segments)
    partitionable = np.asarray(partitionable, dtype=bool)
    num_classes = len(partitionable)
    valid = (classes >= 0) & (classes < num_classes)
    safe = np.where(valid, classes, 0)
    colors = _palette(num_classes)[safe]
    # things: a shade per instance, from a hash of the segment id
    shade = 0.55 + 0.45 * ((segments * 2654435761) % 97 / 96.0)
    colors = np.where((valid & partitionable[safe])[..., None], colors * shade[..., None], colors)
    colors[~valid] = 0
    if image is not None:
        colors = alpha * colors + (1 - alpha) * image.astype(np.float32)
    boundary = np.zeros(segments.shape, dtype=bool)
    boundary[:-1] |= segments[:-1] != segments[1:]
    boundary[:, :-1] |= segments[:, :-1] != segments[:, 1:]
    colors[boundary] = 0
    return np.clip(colors, 0, 255).astype(np.uint8)


def save_comparison(
    path: str | Path,
    image: np.ndarray | None,
    labelings: Sequence[tuple[torch.Tensor, torch.Tensor]],
    partitionable: torch.Tensor,
    titles: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> None:
    """Save :func:`comparison` as a PNG."""
    picture = comparison(image, labelings, partitionable, titles, class_names)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(picture).save(path)


# the title strip above the panels and the height of one legend line, in pixels
STRIP = 16


def _text(picture: np.ndarray, texts: Sequence[tuple[int, int, str]]) -> np.ndarray:
    """``picture`` with white ``(x, y, text)`` drawn in Pillow's built-in font."""
    canvas = Image.fromarray(picture)
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    for x, y, text in texts:
        draw.text((x, y), text, fill=(255, 255, 255), font=font)
    return np.asarray(canvas)


def _title_strip(titles: Sequence[str], width: int) -> np.ndarray:
    """A black ``[STRIP, len(titles) · width, 3]`` strip with each title over its panel."""
    strip = np.zeros((STRIP, width * len(titles), 3), dtype=np.uint8)
    return _text(strip, [(k * width + 4, 2, title) for k, title in enumerate(titles)])


def _legend(classes: Sequence[int], class_names: Sequence[str], num_classes: int,
            width: int) -> np.ndarray:  # fmt: skip
    """Black lines of ``width`` pixels: a swatch of each class's colour and its name, wrapped."""
    palette = _palette(num_classes).astype(np.uint8)
    font = ImageFont.load_default()
    places, x, y = [], 4, 0
    for index in classes:
        name = class_names[index]
        span = STRIP + int(font.getlength(name)) + 12
        if x + span > width and x > 4:
            x, y = 4, y + STRIP
        places.append((x, y, index, name))
        x += span
    legend = np.zeros((y + STRIP, width, 3), dtype=np.uint8)
    for x, y, index, _ in places:
        legend[y + 3 : y + STRIP - 3, x : x + STRIP - 6] = palette[index]
    return _text(legend, [(x + STRIP - 2, y + 2, name) for x, y, _, name in places])


def comparison(
    image: np.ndarray | None,
    labelings: Sequence[tuple[torch.Tensor, torch.Tensor]],
    partitionable: torch.Tensor,
    titles: Sequence[str] | None = None,
    class_names: Sequence[str] | None = None,
) -> np.ndarray:
    """``[H', W', 3]`` uint8: [image | labeling | labeling | …] side by side (e.g. prediction,
    then ground truth; each a ``(classes, segments)`` pair; labelings smaller than the image, e.g.
    at stride 4, are scaled up to it by repetition). ``titles`` (one per panel, the image's
    first) add a title strip above; ``class_names`` (one per class) a legend below of the classes
    the labelings show."""
    if image is None and not labelings:
        raise ValueError("save_comparison needs an image or at least one labeling")
    panels = [] if image is None else [image]
    if titles is not None and len(titles) != len(panels) + len(labelings):
        raise ValueError(
            f"titles: one per panel ({len(panels) + len(labelings)}), got {len(titles)}"
        )
    if class_names is not None and len(class_names) != len(partitionable):
        raise ValueError(
            f"class_names: one per class ({len(partitionable)}), got {len(class_names)}"
        )
    shown: set[int] = set()
    height, width = image.shape[:2] if image is not None else labelings[0][0].shape
    for labeling in labelings:
        classes, segments = (np.asarray(torch.as_tensor(x).cpu()) for x in labeling)
        factor_h, factor_w = height // classes.shape[0], width // classes.shape[1]
        classes = classes.repeat(factor_h, 0).repeat(factor_w, 1)
        segments = segments.repeat(factor_h, 0).repeat(factor_w, 1)
        pad = ((0, height - classes.shape[0]), (0, width - classes.shape[1]))
        classes, segments = np.pad(classes, pad, constant_values=-1), np.pad(segments, pad)
        panels.append(panoptic_colors(classes, segments, partitionable, image))
        shown.update(c for c in np.unique(classes).tolist() if 0 <= c < len(partitionable))
    picture = np.concatenate(panels, axis=1)
    parts = [] if titles is None else [_title_strip(titles, width)]
    parts.append(picture)
    if class_names is not None and shown:
        parts.append(_legend(sorted(shown), class_names, len(partitionable), picture.shape[1]))
    return np.concatenate(parts, axis=0)
