"""Data: COCO-panoptic files, datasets in their official layouts, synthetic street scenes."""

from .panoptic_files import (
    id2rgb,
    labeling_to_panoptic,
    read_panoptic_json,
    read_panoptic_png,
    rgb2id,
    segments_info,
    write_panoptic_json,
    write_panoptic_png,
)

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
