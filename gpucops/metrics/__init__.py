"""Evaluation metrics that agree with the official tools: panoptic quality (the algorithm of
panopticapi / cityscapesscripts, in process or on COCO-panoptic files), boundary PQ, and mean
IoU."""

from .panoptic import PanopticQuality, boundary_band, panoptic_quality
from .semantic import SemanticIoU

__all__ = ["PanopticQuality", "SemanticIoU", "boundary_band", "panoptic_quality"]
