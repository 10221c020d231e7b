"""Evaluation metrics that agree with the official tools: panoptic quality (the algorithm of
panopticapi / cityscapesscripts, in process or on COCO-panoptic files), boundary PQ, mean IoU,
and instance AP through pycocotools and cityscapesscripts with the eq. 12 instance score."""

from .evaluation import evaluate_panoptic
from .instances import cityscapes_ap, coco_ap, instance_scores
from .panoptic import PanopticQuality, boundary_band, panoptic_quality
from .semantic import SemanticIoU

__all__ = [
    "PanopticQuality",
    "SemanticIoU",
    "boundary_band",
    "cityscapes_ap",
    "coco_ap",
    "evaluate_panoptic",
    "instance_scores",
    "panoptic_quality",
]
