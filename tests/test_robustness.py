"""Faults an adversarial test of the public surfaces found (issue 18), each driven through the
public API: no input modified, no internal cache handed out, no overflowing sums accepted, no
crash on an all-void batch, no boundary ratio that would run for hours."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import gpucops
from gpucops.cli import main
from gpucops.data import (
    CityscapesPanoptic,
    PanopticWriter,
    read_image,
    write_panoptic_json,
    write_panoptic_png,
    write_synthetic_cityscapes,
)
from gpucops.data.images import image_size
from gpucops.losses import semantic_pretraining_loss
from gpucops.metrics.panoptic import PanopticQuality
from gpucops.synthetic import make_problem
from tests.golden import random_graph

DISTANCES = (1, 2, 4)


def test_grid_edges_hands_out_copies_of_its_cache():
    edges, map_index = gpucops.grid_edges(6, 7, DISTANCES)
    expected_edges, expected_index = edges.clone(), map_index.clone()
    edges += 1000  # how a caller offsets one image's edges to batch them
    map_index.zero_()
    again, again_index = gpucops.grid_edges(6, 7, DISTANCES)
    assert torch.equal(again, expected_edges) and torch.equal(again_index, expected_index)
    # and the solvers still solve the problem they are given
    p = make_problem(1, 6, 7, 3, DISTANCES, seed=0)
    args = (p.node_costs, p.edge_costs, p.partitionable, DISTANCES)
    for method in ("parallel", "sequential"):
        lab = gpucops.solve(*args, method=method)
        reported = gpucops.objective(*args[:3], lab.classes, lab.segments, DISTANCES)
        torch.testing.assert_close(lab.objective, reported)


@pytest.mark.parametrize("method", ["parallel", "sequential"])
def test_solvers_leave_grid_inputs_untouched(method):
    p = make_problem(2, 8, 10, 5, DISTANCES, seed=1)
    node_costs = p.node_costs.double().contiguous(memory_format=torch.channels_last)
    mask = torch.zeros(2, 5, dtype=torch.bool)
    mask[0, 2] = True
    inputs = (node_costs, p.edge_costs.double(), p.partitionable)
    before = [tensor.clone() for tensor in (*inputs, mask)]
    lab = gpucops.solve(*inputs, DISTANCES, method=method, label_mask=mask)
    gpucops.refine(lab, *inputs, DISTANCES, label_mask=mask)
    for tensor, copy in zip((*inputs, mask), before, strict=True):
        assert torch.equal(tensor, copy)


@pytest.mark.parametrize("name", ["node_costs", "edge_costs"])
def test_float64_costs_whose_sums_overflow_are_refused(name):
    p = make_problem(1, 4, 5, 3, (1,), seed=2)
    costs = {"node_costs": p.node_costs.double(), "edge_costs": p.edge_costs.double()}
    # finite entries, a finite sum (they cancel), but partial sums overflow float64
    costs[name].view(-1)[:2] = torch.tensor([1.7e308, -1.7e308], dtype=torch.float64)
    args = (costs["node_costs"], costs["edge_costs"], p.partitionable, (1,))
    for method in ("parallel", "sequential"):
        with pytest.raises(ValueError, match=f"{name} is too large"):
            gpucops.solve(*args, method=method)
    # float32 costs cannot overflow the solvers' float64 sums: accepted, finite objective
    big = p.node_costs.clone()
    big.view(-1)[:2] = torch.tensor([3e38, -3e38])
    lab = gpucops.solve(big, p.edge_costs, p.partitionable, (1,))
    assert torch.isfinite(lab.objective).all()


def test_semantic_loss_of_an_all_void_batch_is_zero():
    logits = torch.randn(2, 5, 4, 4, requires_grad=True)
    target = torch.full((2, 16, 16), 255)
    loss = semantic_pretraining_loss(logits, target)  # default top_k = 0.2
    assert loss.item() == 0.0
    loss.backward()
    assert torch.equal(logits.grad, torch.zeros_like(logits))


@pytest.mark.parametrize("ratio", ["2", "0", "-0.1", "x"])
def test_a_boundary_ratio_outside_zero_one_is_refused_at_parsing(ratio, capsys):
    files = ["--gt-json", "g.json", "--gt-dir", ".", "--pred-json", "p.json", "--pred-dir", "."]
    with pytest.raises(SystemExit) as exit_info:
        main(["evaluate", *files, "--boundary-ratio", ratio])
    assert exit_info.value.code == 2
    assert "--boundary-ratio" in capsys.readouterr().err


@pytest.mark.parametrize("ratio", [2.0, 0.0, 1.0])
def test_panoptic_quality_refuses_a_boundary_ratio_outside_zero_one(ratio):
    with pytest.raises(ValueError, match="boundary_ratio"):
        PanopticQuality({1: True}, boundary_ratio=ratio)


@pytest.mark.parametrize("method", ["parallel", "sequential"])
def test_sparse_image_ids_solve_only_the_images_that_hold_nodes(method, monkeypatch):
    from gpucops.solver import parallel

    calls = []
    rounds = parallel.contract_rounds
    monkeypatch.setattr(parallel, "contract_rounds", lambda *a: calls.append(1) or rounds(*a))
    graph = random_graph(4, 120, 5, 2)
    compact = gpucops.solve_graph(**graph, method=method)
    sparse_ids = torch.tensor([7, 10_000])[graph["image_index"]]
    mask = torch.zeros(10_001, 5, dtype=torch.bool)
    sparse = gpucops.solve_graph(**{**graph, "image_index": sparse_ids}, method=method,
                                 label_mask=mask)  # fmt: skip
    assert torch.equal(sparse.classes, compact.classes)
    assert torch.equal(sparse.segments, compact.segments)
    assert sparse.objective.shape == (10_001,)
    assert torch.equal(sparse.objective[[7, 10_000]], compact.objective)
    assert sparse.objective.count_nonzero() <= 2
    if method == "parallel":  # the two images one by one on the CPU, never the empty ones
        assert len(calls) == 4


@pytest.mark.parametrize("name", ["../secret.png", "/etc/secret.png", "a/../../secret.png"])
def test_evaluate_refuses_file_names_that_leave_the_given_folders(name, tmp_path, capsys):
    # a readable PNG outside the prediction folder: the old reader opened it
    (tmp_path / "pred").mkdir()
    ids = np.zeros((4, 4), dtype=np.uint32)
    write_panoptic_png(tmp_path / "gt.png", ids)
    write_panoptic_png(tmp_path / "secret.png", ids)
    categories = [{"id": 1, "name": "thing", "isthing": 1}]
    write_panoptic_json(tmp_path / "gt.json", [{"image_id": 1, "file_name": "gt.png",
                        "segments_info": []}], categories)  # fmt: skip
    write_panoptic_json(tmp_path / "pred.json", [{"image_id": 1, "file_name": name,
                        "segments_info": []}], categories)  # fmt: skip
    args = ["evaluate", "--gt-json", str(tmp_path / "gt.json"), "--gt-dir", str(tmp_path),
            "--pred-json", str(tmp_path / "pred.json"), "--pred-dir", str(tmp_path / "pred"),
            "--no-ap"]  # fmt: skip
    assert main(args) != 0
    error = capsys.readouterr().err.strip()
    assert "leaves the folder" in error and name in error and len(error.splitlines()) == 1


def test_align_segments_works_on_compact_ground_truth_ids(monkeypatch):
    from gpucops import matching

    g = torch.Generator().manual_seed(5)
    pred_classes = torch.randint(0, 3, (2, 16, 16), generator=g)
    pred_segments = torch.randint(0, 6, (2, 16, 16), generator=g)
    gt_classes = torch.randint(0, 3, (2, 16, 16), generator=g)
    gt_segments = torch.randint(-1, 5, (2, 16, 16), generator=g)
    gt_classes[gt_segments < 0] = -1
    weights = torch.rand(2, 16, 16, generator=g)
    compact = matching.align_segments(pred_classes, pred_segments, gt_classes, gt_segments, weights)
    # raw COCO-panoptic ids (RGB-encoded, up to 2^24), with gaps; increasing, so the channels
    # come in the same order
    raw = torch.tensor([5, 77, 9_999, 4_000_000, 16_777_215])
    raw_segments = torch.where(gt_segments >= 0, raw[gt_segments.clamp(min=0)], -1)
    sizes = []
    iou = matching.soft_iou_matrix
    monkeypatch.setattr(matching, "soft_iou_matrix", lambda *a: sizes.append(a[4]) or iou(*a))
    sparse = matching.align_segments(pred_classes, pred_segments, gt_classes, raw_segments, weights)
    present = [gt_segments[b][gt_segments[b] >= 0].unique().numel() for b in range(2)]
    assert sizes == present  # [predictions, present segments], not [predictions, 2^24]
    assert torch.equal(sparse.pred, compact.pred) and torch.equal(sparse.classes, compact.classes)
    assert torch.equal(sparse.gt, torch.where(compact.gt >= 0, raw[compact.gt.clamp(min=0)], -1))


def test_a_16_bit_grayscale_image_is_read_scaled_not_white(tmp_path):
    values = (np.arange(64 * 64).reshape(64, 64) * 16).astype(np.uint16)  # 0 … 65520
    Image.fromarray(values).save(tmp_path / "gray16.png")
    image = read_image(tmp_path / "gray16.png")
    assert image.shape == (64, 64, 3) and image.dtype == np.uint8
    expected = np.round(values / 257).astype(np.uint8)  # 65535 → 255
    assert np.abs(image[..., 0].astype(int) - expected).max() <= 1
    assert 120 < image.mean() < 135  # not uniformly white (the old reading: 254.5)


def _one_image_dataset(tmp_path):
    root = write_synthetic_cityscapes(tmp_path, num_images=1, height=32, width=64, progress=False)
    (panoptic,) = (root / "gtFine" / "cityscapes_panoptic_train").glob("*.png")
    (image,) = (root / "leftImg8bit" / "train").rglob("*.png")
    return root, panoptic, image


def test_an_image_and_its_panoptic_png_of_different_sizes_are_refused(tmp_path):
    root, panoptic, image = _one_image_dataset(tmp_path)
    Image.open(image).resize((48, 32)).save(image)
    with pytest.raises(ValueError, match=f"{panoptic.name} is 32×64 but its image"):
        CityscapesPanoptic(root, distances=(1, 2))[0]


def test_panoptic_ids_missing_from_segments_info_are_refused(tmp_path):
    root, panoptic, _ = _one_image_dataset(tmp_path)
    for document_path in (root / "gtFine").glob("cityscapes_panoptic_train*.json"):
        document = json.loads(document_path.read_text())
        annotation = document["annotations"][0]
        annotation["segments_info"] = annotation["segments_info"][3:]
        document_path.write_text(json.dumps(document))
    with pytest.raises(ValueError, match=f"{panoptic.name} has segment ids"):
        CityscapesPanoptic(root, distances=(1, 2))[0]


def test_predict_reads_the_pixels_of_one_batch_at_a_time(tmp_path, monkeypatch):
    from gpucops.cli import predict

    for index, size in enumerate([(8, 6), (8, 6), (5, 7), (8, 6), (5, 7)]):
        Image.fromarray(np.full((*size, 3), index, np.uint8)).save(tmp_path / f"{index}.png")
    read = []
    monkeypatch.setattr(predict, "read_image", lambda path: read.append(path) or read_image(path))
    paths = sorted(tmp_path.glob("*.png"))
    batches = predict._batches(paths, {path: image_size(path) for path in paths}, 2)
    names, _, stacked = next(batches)
    assert len(read) == 2 and stacked.shape == (2, 3, 5, 7)  # the smaller size first
    assert [path.name for path in names] == ["2.png", "4.png"]
    rest = list(batches)
    assert len(read) == 5 and [len(names) for names, _, _ in rest] == [2, 1]


def test_an_interrupted_writer_loses_no_finished_image(tmp_path):
    categories = [{"id": 7, "name": "thing", "isthing": 1}]
    classes = torch.zeros(4, 5, dtype=torch.int64)
    segments = torch.arange(20).view(4, 5) % 3
    first = PanopticWriter(tmp_path / "panoptic", categories)
    first.add("a", classes, segments)
    first.add("b", classes, segments)
    del first  # killed before close(): no JSON
    assert not (tmp_path / "panoptic.json").exists()
    with (tmp_path / "panoptic.json.partial.jsonl").open("a") as handle:
        handle.write('[{"image_id": "c", "file_na')  # a line cut short by the kill
    again = PanopticWriter(tmp_path / "panoptic", categories)
    assert again.done == {"a", "b"}  # a re-run skips these
    again.add("c", classes, segments)
    document = json.loads(again.close().read_text())
    assert [a["image_id"] for a in document["annotations"]] == ["a", "b", "c"]
    assert not (tmp_path / "panoptic.json.partial.jsonl").exists()
    assert not list(tmp_path.rglob(".*partial*"))
    assert PanopticWriter(tmp_path / "panoptic", categories).done == set()


def test_no_distances_is_a_clear_error():
    p = make_problem(1, 8, 8, 3, (1,), seed=0)
    with pytest.raises(ValueError, match="distances must hold at least one"):
        gpucops.solve(p.node_costs, p.edge_costs[:, :0], p.partitionable, ())


@pytest.mark.parametrize("problem", ["read-only", "a file in its place"])
def test_an_unusable_build_cache_is_one_clear_error(problem, tmp_path, monkeypatch):
    from gpucops.solver import hostbuild

    cache = tmp_path / "cache"
    if problem == "read-only":  # as root, only a path under a file is unwritable for sure
        (tmp_path / "file").write_text("")
        cache = tmp_path / "file" / "cache"
    else:
        cache.write_text("")
    monkeypatch.setenv("GPUCOPS_CACHE_DIR", str(cache))
    source = tmp_path / "answer.cpp"
    source.write_text('extern "C" int answer() { return 42; }\n')
    with pytest.raises(RuntimeError, match="set GPUCOPS_CACHE_DIR to a writable folder"):
        hostbuild.build_library(source)
    monkeypatch.setenv("GPUCOPS_CACHE_DIR", "")  # empty = unset, not the working directory
    assert hostbuild.cache_dir() != Path("")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        ({"annotations": [{"image_id": 1, "segments_info": []}], "categories": []},
         r"annotations\[0\] has no 'file_name'"),
        ({"annotations": [], "categories": [{"id": 1}]}, r"categories\[0\] has no 'isthing'"),
        ([], "not a JSON object"),
    ],
)  # fmt: skip
def test_evaluate_names_a_missing_json_key_in_one_line(document, message, tmp_path, capsys):
    (tmp_path / "gt.json").write_text(json.dumps(document))
    write_panoptic_json(tmp_path / "pred.json", [], [])
    args = ["evaluate", "--gt-json", str(tmp_path / "gt.json"), "--gt-dir", str(tmp_path),
            "--pred-json", str(tmp_path / "pred.json"), "--pred-dir", str(tmp_path)]  # fmt: skip
    assert main(args) != 0
    error = capsys.readouterr().err.strip()
    assert len(error.splitlines()) == 1
    assert re.search(message, error), error


@pytest.mark.parametrize("lambda_range", [(1.0, float("inf")), (0.0, 5.0), (5.0, 1.0)])
def test_the_layer_refuses_a_lambda_range_it_cannot_draw_from(lambda_range):
    from gpucops.layer import AMWCLayer

    with pytest.raises(ValueError, match="lambda_range"):
        AMWCLayer(torch.tensor([True, False]), (1, 2), lambda_range=lambda_range)


@pytest.mark.parametrize(
    ("change", "message"),
    [("class 9", r"gt_classes must lie in \[-1, 5\)"), ("shape", "gt_segments must have shape"),
     ("float", "gt_classes must be int32 or int64")],
)  # fmt: skip
def test_the_layer_names_a_bad_ground_truth(change, message):
    from gpucops.layer import AMWCLayer

    layer = AMWCLayer(torch.tensor([False, False, True, True, True]), (1, 2), num_samples=1)
    semantic, affinity = torch.randn(1, 5, 6, 7), torch.randn(1, 4, 6, 7)
    gt_classes = torch.zeros(1, 6, 7, dtype=torch.int64)
    gt_segments = torch.zeros(1, 6, 7, dtype=torch.int64)
    if change == "class 9":
        gt_classes[0, 0, 0] = 9
    elif change == "shape":
        gt_segments = gt_segments[:, :5]
    else:
        gt_classes = gt_classes.float()
    with pytest.raises(ValueError, match=message):
        layer(semantic, affinity, gt_classes, gt_segments)


def _openmp_spin_count(code: str, **env: str) -> str:
    """The spin count libgomp chose at load (its ``OMP_DISPLAY_ENV=verbose`` report) in a fresh
    interpreter running ``code``."""
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    result = subprocess.run(
        [sys.executable, "-c", code], env={**clean, "OMP_DISPLAY_ENV": "verbose", **env},
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return re.search(r"GOMP_SPINCOUNT = '(\d+)'", result.stderr).group(1)


def test_idle_openmp_threads_sleep_when_gpucops_is_imported_first():
    # a spinning idle worker made a busy neighbour cost 10×, benchmarks/contention.py (item 16)
    assert _openmp_spin_count("import gpucops") == "0"
    # the user's choice is kept, and torch loaded first is out of reach (documented)
    assert _openmp_spin_count("import gpucops", OMP_WAIT_POLICY="ACTIVE") != "0"
    assert _openmp_spin_count("import torch, gpucops") != "0"
