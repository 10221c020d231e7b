"""Data: COCO-panoptic files, datasets in their official layouts, synthetic street scenes."""

from .images import read_image
from .panoptic_dataset import CityscapesPanoptic, CocoPanoptic, PanopticDataset
from .panoptic_files import (
    PanopticWriter,
    id2rgb,
    labeling_to_panoptic,
    panoptic_pairs,
    panoptic_segments,
    read_label_png,
    read_panoptic_json,
    read_panoptic_png,
    rgb2id,
    segments_info,
    write_label_png,
    write_panoptic_json,
    write_panoptic_png,
)
from .synthetic_cityscapes import write_synthetic_cityscapes
from .voc_sample import voc_sample

__all__ = [
    "CityscapesPanoptic",
    "CocoPanoptic",
    "PanopticDataset",
    "PanopticWriter",
    "id2rgb",
    "labeling_to_panoptic",
    "panoptic_pairs",
    "panoptic_segments",
    "read_image",
    "read_label_png",
    "read_panoptic_json",
    "read_panoptic_png",
    "rgb2id",
    "segments_info",
    "voc_sample",
    "write_label_png",
    "write_panoptic_json",
    "write_panoptic_png",
    "write_synthetic_cityscapes",
]
