"""Instance scores (eq. 12) and AP through pycocotools and cityscapesscripts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gpucops.metrics import cityscapes_ap, coco_ap, instance_scores


def _scene(height=64, width=128):
    """Road (label 7) with two cars (label 26) of 20×20 pixels."""
    ids = np.full((height, width), 7, dtype=np.uint16)
    cars = []
    for k, (top, left) in enumerate([(10, 10), (30, 70)]):
        ids[top : top + 20, left : left + 20] = 26000 + k
        cars.append(ids == 26000 + k)
    return ids, cars


def test_coco_ap_hand_made_cases():
    _, cars = _scene()
    truth = [[(26, cars[0], False), (26, cars[1], False)]]
    perfect = [[(26, cars[0], 0.9), (26, cars[1], 0.8)]]
    assert coco_ap(truth, perfect)["ap"] == pytest.approx(1.0)
    missed = coco_ap(truth, [[(26, cars[0], 0.9)]])
    assert missed["ap"] == pytest.approx(51 / 101, abs=1e-3)  # recall 0.5 of 101 points
    shifted = np.roll(cars[1], 3, axis=1)
    duplicate = [[(26, cars[0], 0.9), (26, cars[0], 0.95), (26, cars[1], 0.8)]]
    assert coco_ap(truth, duplicate)["ap"] < 1.0  # a higher-scored duplicate is a FP first
    assert coco_ap(truth, [[(26, cars[0], 0.9), (26, shifted, 0.8)]])["ap50"] == pytest.approx(1.0)


def test_cityscapes_ap_hand_made_cases(tmp_path):
    ids, cars = _scene()
    gt_file = tmp_path / "a_000000_000000_gtFine_instanceIds.png"
    Image.fromarray(ids).save(gt_file)
    perfect = cityscapes_ap([gt_file], [[(26, cars[0], 0.9), (26, cars[1], 0.8)]], tmp_path / "p")
    assert perfect["ap"] == pytest.approx(1.0) and perfect["per_class"]["car"]["ap"] == 1.0
    missed = cityscapes_ap([gt_file], [[(26, cars[0], 0.9)]], tmp_path / "m")
    assert 0.3 < missed["ap"] < 0.7
    duplicate = [[(26, cars[0], 0.95), (26, cars[0], 0.9), (26, cars[1], 0.8)]]
    assert cityscapes_ap([gt_file], duplicate, tmp_path / "d")["ap"] < 1.0


def test_instance_score_is_eq_12():
    height, width = 8, 12
    classes = torch.zeros(height, width, dtype=torch.long)
    segments = torch.zeros(height, width, dtype=torch.long)
    classes[2:6, 3:8], segments[2:6, 3:8] = 1, 1
    partitionable = torch.tensor([False, True])
    semantic = torch.randn(2, height, width, generator=torch.Generator().manual_seed(0))
    affinity = torch.zeros(2, height, width)
    (score,) = instance_scores(semantic, affinity, classes, segments, partitionable, (1,), 1)
    assert score[:2] == (1, 1)
    assert score[2] == pytest.approx(float(semantic[1, 2:6, 3:8].mean()))
    # with all affinity logits 1: + (#cut − #joined edges) / (2·H·W), counted by hand for d = 1
    mask = (segments == 1).numpy()
    cut = joined = 0
    for r in range(height):
        for c in range(width):
            for r2, c2 in ((r + 1, c), (r, c + 1)):
                if r2 < height and c2 < width:
                    cut += mask[r, c] != mask[r2, c2]
                    joined += mask[r, c] and mask[r2, c2]
    (score1,) = instance_scores(semantic, affinity + 1, classes, segments, partitionable, (1,), 1)
    assert score1[2] == pytest.approx(score[2] + (cut - joined) / (2 * height * width))
