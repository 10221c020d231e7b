"""Evaluation metrics that agree with the official tools: panoptic quality (the algorithm of
panopticapi / cityscapesscripts, in process or on COCO-panoptic files) and mean IoU."""

from .panoptic import PanopticQuality, panoptic_quality
from .semantic import SemanticIoU

__all__ = ["PanopticQuality", "SemanticIoU", "panoptic_quality"]
