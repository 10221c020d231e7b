"""Panoptic quality against cityscapesscripts' evaluatePanoptic on the same files; mIoU; files."""

from __future__ import annotations

import contextlib
import io
import json

import numpy as np
import pytest
import torch

from gpucops.data import (
    id2rgb,
    labeling_to_panoptic,
    read_panoptic_png,
    rgb2id,
    segments_info,
    write_panoptic_json,
    write_panoptic_png,
)
from gpucops.metrics import PanopticQuality, SemanticIoU, panoptic_quality

CATEGORIES = [
    {"id": 7, "name": "road", "isthing": 0},
    {"id": 8, "name": "sidewalk", "isthing": 0},
    {"id": 21, "name": "vegetation", "isthing": 0},
    {"id": 24, "name": "person", "isthing": 1},
    {"id": 26, "name": "car", "isthing": 1},
]


def _random_pair(rng: np.random.Generator, height=30, width=40):
    """A ground truth (Cityscapes ids: stuff = label id, things = label id·1000 + k, crowd =
    label id of a thing class, 0 void) and a prediction made from it with shifted, dropped,
    added and relabelled segments."""
    gt = np.full((height, width), 7, dtype=np.int64)
    gt[: height // 3] = 21
    gt[height // 3 : height // 2, : width // 2] = 8
    gt[rng.random((height, width)) < 0.03] = 0  # scattered void
    crowd = set()
    for k in range(rng.integers(2, 6)):
        category = int(rng.choice([24, 26]))
        top, left = rng.integers(0, height - 6), rng.integers(0, width - 6)
        h, w = rng.integers(3, 9), rng.integers(3, 12)
        segment = category if k == 0 and rng.random() < 0.5 else category * 1000 + k
        if segment < 1000:
            crowd.add(segment)
        gt[top : top + h, left : left + w] = segment
    pred = np.roll(gt, shift=(int(rng.integers(-1, 2)), int(rng.integers(-2, 3))), axis=(0, 1))
    pred = pred.copy()
    pred[pred == 0] = 7
    for segment in np.unique(pred):
        if segment >= 1000 and rng.random() < 0.2:
            pred[pred == segment] = 7  # dropped instance
        elif segment >= 1000 and rng.random() < 0.2:
            pred[pred == segment] = (26 if segment // 1000 == 24 else 24) * 1000 + 99  # wrong class
    top, left = rng.integers(0, height - 4), rng.integers(0, width - 4)
    pred[top : top + 4, left : left + 4] = 26 * 1000 + 50  # a false positive
    if rng.random() < 0.3:
        pred[pred == 8] = 0  # a stuff class left void
    return gt, crowd, pred


def _category(segment: int) -> int:
    return segment // 1000 if segment >= 1000 else segment


def _write(folder, name, ids, crowd, annotations):
    folder.mkdir(exist_ok=True)
    write_panoptic_png(folder / f"{name}.png", ids)
    categories = {int(s): _category(int(s)) for s in np.unique(ids) if s}
    annotations.append(
        {"image_id": name, "file_name": f"{name}.png",
         "segments_info": segments_info(ids, categories, crowd)}
    )  # fmt: skip


@pytest.mark.parametrize("seed", [0, 1])
def test_pq_equals_cityscapesscripts(tmp_path, seed):
    from cityscapesscripts.evaluation.evalPanopticSemanticLabeling import evaluatePanoptic

    rng = np.random.default_rng(seed)
    gt_annotations, pred_annotations = [], []
    for i in range(4):
        gt, crowd, pred = _random_pair(rng)
        _write(tmp_path / "gt", f"img{i}", gt, crowd, gt_annotations)
        _write(tmp_path / "pred", f"img{i}", pred, set(), pred_annotations)
    write_panoptic_json(tmp_path / "gt.json", gt_annotations, CATEGORIES)
    write_panoptic_json(tmp_path / "pred.json", pred_annotations, CATEGORIES)
    args = (tmp_path / "gt.json", tmp_path / "gt", tmp_path / "pred.json", tmp_path / "pred")
    ours = panoptic_quality(*args)
    with contextlib.redirect_stdout(io.StringIO()):
        theirs = evaluatePanoptic(*map(str, args), str(tmp_path / "results.json"))
    assert 0 < ours["All"]["pq"] < 1  # a case with matches and misses
    for name in ("All", "Things", "Stuff"):
        for key in ("pq", "sq", "rq"):
            assert ours[name][key] == pytest.approx(theirs[name][key], abs=1e-6)
        assert ours[name]["n"] == theirs[name]["n"]
    for category, scores in theirs["per_class"].items():
        for key in ("pq", "sq", "rq"):
            mine = ours["per_class"][category][key]
            if mine is None:  # absent from both: cityscapesscripts writes 0.0 (but skips it)
                assert scores[key] == 0.0
                continue
            assert mine == pytest.approx(scores[key], abs=1e-6)


def test_perfect_and_half_overlapping_predictions():
    gt = np.zeros((10, 10), dtype=np.int64)
    gt[:, :5], gt[:, 5:] = 7, 26001
    info = segments_info(gt, {7: 7, 26001: 26})
    metric = PanopticQuality({7: False, 26: True})
    metric.update(gt, info, gt, info)
    assert metric.compute()["All"]["pq"] == 1.0
    half = gt.copy()
    half[:5, 5:] = 7  # the car keeps half its pixels: IoU 0.5 is not a match
    metric = PanopticQuality({7: False, 26: True})
    metric.update(gt, info, half, segments_info(half, {7: 7, 26001: 26}))
    result = metric.compute()
    assert result["per_class"][26] == {"pq": 0.0, "sq": 0.0, "rq": 0.0}
    assert result["Things"]["n"] == 1  # one FN and one FP, no TP


def test_a_class_absent_from_both_sides_has_no_score_and_no_share_of_the_means():
    gt = np.zeros((10, 10), dtype=np.int64)
    gt[:, :5], gt[:, 5:] = 7, 26001
    info = segments_info(gt, {7: 7, 26001: 26})
    metric = PanopticQuality({7: False, 8: False, 26: True})  # class 8: in no image
    metric.update(gt, info, gt, info)
    result = metric.compute()
    assert result["per_class"][8] == {"pq": None, "sq": None, "rq": None}  # not 0.0
    assert result["All"] == {"pq": 1.0, "sq": 1.0, "rq": 1.0, "n": 2}
    semantic = SemanticIoU(3)
    semantic.update(torch.tensor([0, 0, 2]), torch.tensor([0, 0, 2]))
    iou = semantic.compute()
    assert iou["per_class"] == [1.0, None, 1.0] and iou["miou"] == 1.0
    json.dumps(iou)  # None is JSON (null); the nan it replaced was not


def test_bad_prediction_files_are_clear_errors():
    gt = np.full((4, 4), 7, dtype=np.int64)
    metric = PanopticQuality({7: False})
    with pytest.raises(ValueError, match="not its JSON"):
        metric.update(gt, segments_info(gt, {7: 7}), gt, [])
    with pytest.raises(ValueError, match="unknown category_id"):
        metric.update(gt, segments_info(gt, {7: 7}), gt, [{"id": 7, "category_id": 99}])


def test_panoptic_png_round_trip(tmp_path):
    ids = np.random.default_rng(0).integers(0, 256**3, (7, 9))
    write_panoptic_png(tmp_path / "x.png", ids)
    assert np.array_equal(read_panoptic_png(tmp_path / "x.png"), ids)
    assert np.array_equal(rgb2id(id2rgb(ids)), ids)
    with pytest.raises(ValueError, match="segment ids"):
        id2rgb(np.array([[-1]]))


def test_labeling_to_panoptic():
    classes = torch.tensor([[0, 0, 1], [1, 1, 1]])
    segments = torch.tensor([[0, 0, 1], [2, 2, 1]])
    ids, categories = labeling_to_panoptic(classes, segments, [7, 26])
    assert ids.tolist() == [[1, 1, 2], [3, 3, 2]]
    assert categories == {1: 7, 2: 26, 3: 26}


def test_semantic_iou():
    metric = SemanticIoU(3)
    target = torch.tensor([0, 0, 1, 1, 255, 2])
    metric.update(torch.tensor([0, 1, 1, 1, 0, 2]), target)
    result = metric.compute()
    assert result["per_class"] == pytest.approx([0.5, 2 / 3, 1.0])
    assert result["miou"] == pytest.approx((0.5 + 2 / 3 + 1) / 3)
    with pytest.raises(ValueError, match="target classes"):
        metric.update(torch.tensor([0]), torch.tensor([5]))
    with pytest.raises(ValueError, match="prediction classes"):
        metric.update(torch.tensor([3]), torch.tensor([0]))


def test_semantic_iou_counts_an_unlabelled_prediction_as_a_miss():
    metric = SemanticIoU(2)
    # class 0: 2 pixels, one predicted "no class" (−1); class 1: 2 pixels, one "no class" (255)
    metric.update(torch.tensor([0, -1, 1, 255]), torch.tensor([0, 0, 1, 1]))
    result = metric.compute()
    assert result["per_class"] == pytest.approx([0.5, 0.5])
    assert result["accuracy"] == pytest.approx(0.5)


def _band_by_definition(mask: np.ndarray, width: int) -> np.ndarray:
    """Mask pixels within chessboard distance ``width`` of a non-mask pixel or of the outside."""
    height, wide = mask.shape
    band = np.zeros_like(mask, dtype=bool)
    for r, c in zip(*np.nonzero(mask), strict=True):
        r0, r1, c0, c1 = r - width, r + width + 1, c - width, c + width + 1
        outside = r0 < 0 or c0 < 0 or r1 > height or c1 > wide
        band[r, c] = outside or not mask[max(r0, 0) : r1, max(c0, 0) : c1].all()
    return band


@pytest.mark.parametrize("width", [1, 2, 3])
def test_boundary_band_matches_its_definition(width):
    from gpucops.metrics import boundary_band

    rng = np.random.default_rng(width)
    mask = np.zeros((20, 24), dtype=bool)
    mask[3:15, 2:20] = True
    mask[rng.random(mask.shape) < 0.05] = False
    mask[0:4, 18:24] = True  # touches the image border
    assert np.array_equal(boundary_band(mask, width), _band_by_definition(mask, width))


def test_boundary_pq_is_stricter_than_pq():
    gt = np.full((40, 40), 7, dtype=np.int64)
    gt[10:30, 10:30] = 26001
    pred = np.full_like(gt, 7)
    pred[11:30, 10:30] = 26001  # one row short: mask IoU 0.95
    info_gt, info_pred = (
        segments_info(gt, {7: 7, 26001: 26}),
        segments_info(pred, {7: 7, 26001: 26}),
    )
    results = []
    for ratio in (None, 0.02):
        metric = PanopticQuality({7: False, 26: True}, boundary_ratio=ratio)
        metric.update(gt, info_gt, pred, info_pred)
        results.append(metric.compute()["per_class"][26])
    assert results[0]["sq"] == pytest.approx(380 / 400)
    # bands of round(0.02 · 56.6) = 1 pixel: the car's boundary IoU is below its mask IoU
    from gpucops.metrics import boundary_band

    first, second = boundary_band(gt == 26001, 1), boundary_band(pred == 26001, 1)
    expected = (first & second).sum() / (first | second).sum()
    assert results[1]["sq"] == pytest.approx(min(380 / 400, expected))
    assert results[1]["sq"] < results[0]["sq"]


def _accumulated(device: str, boundary_ratio: float | None) -> dict:
    rng = np.random.default_rng(5)
    metric = PanopticQuality({c["id"]: bool(c["isthing"]) for c in CATEGORIES}, boundary_ratio)
    for _ in range(3):
        gt, crowd, pred = _random_pair(rng)
        gt_info = segments_info(gt, {int(s): int(s) % 1000 if s < 1000 else int(s) // 1000
                                     for s in np.unique(gt) if s}, crowd)  # fmt: skip
        pred_info = segments_info(pred, {int(s): int(s) if s < 1000 else int(s) // 1000
                                         for s in np.unique(pred) if s})  # fmt: skip
        ids = (gt, pred) if device == "numpy" else (torch.from_numpy(gt).to(device),
                                                    torch.from_numpy(pred).to(device))  # fmt: skip
        metric.update(ids[0], gt_info, ids[1], pred_info)
    return metric.compute()


@pytest.mark.parametrize("ratio", [None, 0.05])
def test_pq_accumulates_tensors_as_numpy_arrays(ratio):
    expected = _accumulated("numpy", ratio)
    assert 0 < expected["All"]["pq"] < 1
    assert _accumulated("cpu", ratio) == expected


@pytest.mark.gpu
@pytest.mark.parametrize("ratio", [None, 0.05])
def test_pq_accumulates_on_the_gpu(ratio):
    assert _accumulated("cuda", ratio) == _accumulated("numpy", ratio)


def _accumulate(pairs: list, boundary_ratio: float | None = None) -> PanopticQuality:
    metric = PanopticQuality({c["id"]: bool(c["isthing"]) for c in CATEGORIES}, boundary_ratio)
    for gt, crowd, pred in pairs:
        gt_info = segments_info(gt, {int(s): _category(int(s)) for s in np.unique(gt) if s}, crowd)
        pred_info = segments_info(pred, {int(s): _category(int(s)) for s in np.unique(pred) if s})
        metric.update(gt, gt_info, pred, pred_info)
    return metric


@pytest.mark.parametrize("shards", [2, 3])
def test_shards_merged_equal_one_accumulator_bit_for_bit(shards):
    # validation sharded over the ranks of a torchrun job reduces the sums, not the PQs; the IoU
    # sums are correctly rounded (fsum), so the order of the shards cannot change a bit
    rng = np.random.default_rng(7)
    pairs = [_random_pair(rng) for _ in range(7)]
    whole = _accumulate(pairs).compute()
    parts = [PanopticQuality.from_state(_accumulate(pairs[k::shards]).state()) for k in
             range(shards)]  # fmt: skip
    merged = parts[-1]
    for part in parts[:-1]:  # another order than the images'
        merged.merge(part)
    assert merged.compute() == whole and 0 < whole["All"]["pq"] < 1
    with pytest.raises(ValueError, match="same categories and boundary_ratio"):
        merged.merge(_accumulate([], boundary_ratio=0.02))
