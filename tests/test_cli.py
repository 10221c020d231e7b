"""The ``gpucops`` command line, run as a user runs it (subprocesses) on tiny generated data."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gpucops.cli import main
from gpucops.data import read_panoptic_json, read_panoptic_png
from gpucops.inference import Predictor
from gpucops.metrics import panoptic_quality
from gpucops.trainer import TrainConfig, train
from gpucops.visualize import STRIP, panoptic_colors


def gpucops(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpucops", *args], capture_output=True, text=True, cwd=cwd,
        timeout=600,
    )  # fmt: skip


def _one_line_error(args: list[str], needle: str, capsys) -> None:
    """The command (in process: the same ``main`` as the console script) returns exit code 1
    with one line on stderr naming the problem."""
    capsys.readouterr()
    assert main(args) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith(f"gpucops {args[0]}: error:") and needle in lines[-1], lines
    assert "Traceback" not in "\n".join(lines)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """A one-step tiny checkpoint and its synthetic dataset (val: 2 images of 48×80)."""
    folder = tmp_path_factory.mktemp("cli")
    config = TrainConfig(
        data_root=str(folder / "data"), synthetic_images=(2, 2), synthetic_size=(48, 80),
        distances=(1, 4, 8), batch_size=2, steps=1, warmup=1, output_dir=str(folder / "run"),
        checkpoint_every=1, validate_every=100,
    )  # fmt: skip
    train(config)
    return {"checkpoint": folder / "run" / "checkpoint.pt", "root": folder / "data"}


def test_help_and_module_entry(capsys):
    result = gpucops("--help")  # python -m gpucops
    assert result.returncode == 0
    for command in ("demo", "predict", "evaluate", "bench"):
        assert command in result.stdout
    with pytest.raises(SystemExit) as exit_info:
        main(["predict", "--help"])
    assert exit_info.value.code == 0 and "--full-resolution" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        main(["nonsense"])
    assert exit_info.value.code == 2


def test_demo_writes_files_pictures_and_a_table(tmp_path):
    out = tmp_path / "demo"
    result = gpucops("demo", "--out", str(out), "--images", "2", "--height", "32", "--width",
                     "64", "--no-voc")  # fmt: skip
    assert result.returncode == 0, result.stderr
    for header in ("PQ", "speed-up", "quality", "sequential", "parallel cpu", "full (32×64)",
                   "stride 4 (8×16)"):  # fmt: skip
        assert header in result.stdout
    rows = json.loads((out / "summary.json").read_text())
    assert len(rows) == 4 and all(0 <= r["pq"] <= 1 for r in rows)
    assert "| data |" in (out / "summary.md").read_text()
    for name in ("synthetic_000000_000000", "synthetic_000000_000001"):
        picture = np.asarray(Image.open(out / "overlays" / f"{name}.png"))
        # titles | image | stride 4 | full | ground truth | a legend line or more
        assert picture.shape[1] == 4 * 64 and picture.shape[0] >= STRIP + 32 + STRIP
        title, legend = picture[:STRIP], picture[STRIP + 32 :]
        for strip in (title, legend):  # white text on black
            assert (strip > 200).all(-1).any() and (strip == 0).all(-1).mean() > 0.5
    # the predictions are COCO-panoptic files that the official-style evaluation reads; its
    # PQ is the table's
    gt_json = out / "data/gtFine/cityscapes_panoptic_val_trainId.json"
    pred_json = out / "synthetic/full-parallel-cpu.json"
    pq = panoptic_quality(gt_json, gt_json.with_suffix(""), pred_json, pred_json.with_suffix(""))
    row = next(r for r in rows if r["resolution"].startswith("full") and "parallel" in r["solver"])
    assert pq["All"]["pq"] == pytest.approx(row["pq"])


def test_demo_voc_ground_truth_files(tmp_path):
    import argparse

    from gpucops.cli import demo

    scenes = demo._voc(argparse.Namespace(out=str(tmp_path)))
    document = read_panoptic_json(scenes.gt_json)
    assert len(document["categories"]) == 21 and document["categories"][0]["isthing"] == 0
    ids = read_panoptic_png(scenes.gt_dir / document["annotations"][0]["file_name"])
    assert ids.shape == scenes.classes.shape[1:]
    assert ((ids == 0) == (scenes.segments[0] < 0).numpy()).all()


def test_demo_rejects_bad_arguments(tmp_path):
    result = gpucops("demo", "--out", str(tmp_path), "--images", "0")  # across the process
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1].startswith("gpucops demo: error: --images")


def _images(folder: Path, sources: list[Path]) -> Path:
    folder.mkdir()
    for source in sources:
        shutil.copy(source, folder / source.name)
    # one JPEG of another size
    image = np.asarray(Image.open(sources[0]).convert("RGB"))[:40, :56]
    Image.fromarray(image).save(folder / "other.jpg")
    return folder


def test_predict_refuses_a_ground_truth_in_other_ids(trained, tmp_path):
    # label ids against a checkpoint of train ids: every panel would be void, with no word
    gt_json = trained["root"] / "gtFine/cityscapes_panoptic_val_trainId.json"
    document = read_panoptic_json(gt_json)
    for annotation in document["annotations"]:
        for segment in annotation["segments_info"]:
            segment["category_id"] += 100
    shifted = tmp_path / "label_ids.json"
    shifted.write_text(json.dumps(document))
    images = _images(
        tmp_path / "images", sorted((trained["root"] / "leftImg8bit/val").rglob("*.png"))
    )
    result = gpucops(
        "predict", "--checkpoint", str(trained["checkpoint"]), "--images", str(images),
        "--out", str(tmp_path / "out"), "--gt-json", str(shifted),
        "--gt-dir", str(gt_json.with_suffix("")),
    )  # fmt: skip
    assert result.returncode == 1
    assert "--gt-json" in result.stderr and "*_trainId.json" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("full", [False, True])
def test_predict_then_evaluate(trained, tmp_path, full):
    sources = sorted((trained["root"] / "leftImg8bit/val").rglob("*.png"))
    images = _images(tmp_path / "images", sources)
    out = tmp_path / "out"
    gt_json = trained["root"] / "gtFine/cityscapes_panoptic_val_trainId.json"
    args = ["predict", "--checkpoint", str(trained["checkpoint"]), "--images", str(images),
            "--out", str(out), "--batch-size", "2", "--thing-area", "0",
            "--stuff-area", "0", "--gt-json", str(gt_json),
            "--gt-dir", str(gt_json.with_suffix(""))]  # fmt: skip
    result = gpucops(*args, *(["--full-resolution"] if full else []))
    assert result.returncode == 0, result.stderr
    document = read_panoptic_json(out / "panoptic.json")
    assert [c["name"] for c in document["categories"]][:2] == ["road", "sidewalk"]
    by_id = {a["image_id"]: a for a in document["annotations"]}
    names = {source.name.removesuffix("_leftImg8bit.png") for source in sources}
    assert set(by_id) == names | {"other"} and len(names) == 2
    for image_id, annotation in by_id.items():
        ids = read_panoptic_png(out / "panoptic" / annotation["file_name"])
        assert ids.shape == ((40, 56) if image_id == "other" else (48, 80))
        assert sum(s["area"] for s in annotation["segments_info"]) == (ids > 0).sum()
        things = [s for s in annotation["segments_info"] if s["category_id"] >= 11]
        assert all("score" in s for s in things)
        overlay = Image.open(out / "overlays" / f"{image_id}.png")
        # image | prediction | ground truth where the ground truth has the image
        assert overlay.width == (2 * 56 if image_id == "other" else 3 * 80)
    # the ground-truth panel draws the ground truth's classes (train ids = class indices here)
    truth = read_panoptic_json(gt_json)["annotations"][0]
    ids = read_panoptic_png(gt_json.with_suffix("") / truth["file_name"]).astype(np.int64)
    classes = np.full(ids.shape, -1)
    for segment in truth["segments_info"]:
        classes[ids == segment["id"]] = segment["category_id"]
    image = np.asarray(Image.open(images / f"{truth['image_id']}_leftImg8bit.png").convert("RGB"))
    partitionable = torch.arange(19) >= 11
    expected = panoptic_colors(classes, ids, partitionable, image)
    picture = np.asarray(Image.open(out / "overlays" / f"{truth['image_id']}.png").convert("RGB"))
    assert np.array_equal(picture[STRIP : STRIP + 48, 160:240], expected)
    # evaluate: the predictions against the dataset's ground truth (ids without _leftImg8bit)
    result = gpucops("evaluate", "--gt-json", str(gt_json), "--gt-dir",
                     str(gt_json.with_suffix("")), "--pred-json", str(out / "panoptic.json"),
                     "--pred-dir", str(out / "panoptic"), "--boundary-ratio", "0.02")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "Things" in result.stdout and "mIoU" in result.stdout and "AP" in result.stdout
    report = json.loads((out / "panoptic_evaluation.json").read_text())
    expected = panoptic_quality(gt_json, gt_json.with_suffix(""), out / "panoptic.json",
                                out / "panoptic")  # fmt: skip
    assert report["pq"]["All"]["pq"] == pytest.approx(expected["All"]["pq"])
    assert report["images"] == 2 and "boundary_pq" in report and 0 <= report["ap"]["ap"] <= 1


def test_predict_errors_are_one_clear_line(trained, tmp_path, capsys):
    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(images / "a.png")
    checkpoint = str(trained["checkpoint"])

    def predict(*extra: str, checkpoint: str = checkpoint, folder: Path = images) -> list[str]:
        return ["predict", "--checkpoint", checkpoint, "--images", str(folder), "--out",
                str(tmp_path / "out"), *extra]  # fmt: skip

    _one_line_error(predict(checkpoint=str(tmp_path / "missing.pt")), "missing.pt", capsys)
    _one_line_error(predict(folder=tmp_path / "nowhere"), "nowhere", capsys)
    categories = tmp_path / "categories.json"
    categories.write_text(json.dumps({"annotations": [], "categories": [
        {"id": 1, "name": "a", "isthing": 0}, {"id": 2, "name": "b", "isthing": 1}]}))  # fmt: skip
    _one_line_error(predict("--categories", str(categories)), "19 classes", capsys)
    torch.save({"something": 1}, tmp_path / "other.pt")
    _one_line_error(
        predict(checkpoint=str(tmp_path / "other.pt")), "not a gpucops training checkpoint", capsys
    )
    _one_line_error(predict("--device", "tpu"), "--device 'tpu' is not a device", capsys)
    (tmp_path / "file").write_text("")
    _one_line_error(
        ["predict", "--checkpoint", checkpoint, "--images", str(images), "--out",
         str(tmp_path / "file")], "--out", capsys,
    )  # fmt: skip
    _one_line_error(predict("--thing-area", "-5"), "--thing-area", capsys)
    _one_line_error(predict("--gt-json", str(categories)), "--gt-json and --gt-dir go together",
                    capsys)  # fmt: skip
    _one_line_error(predict("--gt-json", str(categories), "--gt-dir", str(tmp_path / "nowhere")),
                    "--gt-dir", capsys)  # fmt: skip
    (images / "broken.png").write_bytes(b"not a png")
    _one_line_error(predict(), "broken.png", capsys)
    with pytest.raises(ValueError, match=r"broken\.png"):  # --debug: the exception itself
        main(["--debug", *predict()])


def test_predict_refuses_up_front_what_memory_cannot_hold(trained, tmp_path, capsys, monkeypatch):
    images = tmp_path / "images"
    images.mkdir()
    for name in ("a", "b"):
        Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(images / f"{name}.png")
    predictor = Predictor(trained["checkpoint"])
    one = predictor.memory_estimate(64, 96)
    assert predictor.memory_estimate(64, 96, 2) == 2 * one
    assert predictor.memory_estimate(64, 96, full_resolution=True) > one
    args = ["predict", "--checkpoint", str(trained["checkpoint"]), "--images", str(images),
            "--out", str(tmp_path / "out")]  # fmt: skip
    monkeypatch.setattr("gpucops.cli.predict.available_memory", lambda device: one + 1)
    _one_line_error(args, "a.png: 2 image(s) of 64×96 pixels need about", capsys)
    _one_line_error(args, "available; use --batch-size 1", capsys)
    monkeypatch.setattr("gpucops.cli.predict.available_memory", lambda device: one // 2)
    _one_line_error([*args, "--batch-size", "1"], "use a smaller image", capsys)
    assert not list((tmp_path / "out").rglob("*.png"))  # refused before any work


def test_evaluate_errors_are_one_clear_line(tmp_path, capsys):
    files = ["--gt-dir", str(tmp_path), "--pred-json", str(tmp_path / "p.json"), "--pred-dir",
             str(tmp_path)]  # fmt: skip
    missing = ["evaluate", "--gt-json", str(tmp_path / "gt.json"), *files]
    _one_line_error(missing, "gt.json", capsys)
    # the files are optional options now (or --checkpoint and --data): one line naming the rest
    _one_line_error(
        ["evaluate", "--gt-json", "x"], "give --gt-dir, --pred-json, --pred-dir", capsys
    )


def test_bench_times_both_resolutions(tmp_path):
    out = tmp_path / "bench.json"
    result = gpucops("bench", "--sizes", "32x48", "--model", "tiny", "--repeats", "1",
                     "--warmup", "0", "--distances", "1", "4", "--json", str(out))  # fmt: skip
    assert result.returncode == 0, result.stderr
    rows = json.loads(out.read_text())
    assert [r["resolution"] for r in rows] == ["stride4", "full"]
    assert [r["grid"] for r in rows] == ["8x12", "32x48"]
    for row in rows:
        assert row["solver_s"] > 0 and row["inference_s"] > 0 and row["peak_memory_mb"] > 0
        assert row["sequential_s"] > 0 and 0 < row["quality"] <= 1.5
    assert "ms/image" in result.stdout and "Table 8" in result.stdout
    bad = gpucops("bench", "--sizes", "8x8")
    assert bad.returncode == 2 and "sizes start at" in bad.stderr


def test_predict_skips_an_image_too_small_for_the_distances_and_goes_on(trained, tmp_path):
    sources = sorted((trained["root"] / "leftImg8bit/val").rglob("*.png"))[:1]
    images = tmp_path / "images"
    images.mkdir()
    shutil.copy(sources[0], images / "good.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(images / "thumbnail.png")  # 4×4 cells
    out = tmp_path / "out"
    result = gpucops("predict", "--checkpoint", str(trained["checkpoint"]), "--images",
                     str(images), "--out", str(out), "--no-overlays")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "skipped" in result.stderr and "thumbnail.png" in result.stderr
    assert "Traceback" not in result.stderr
    document = read_panoptic_json(out / "panoptic.json")
    assert [a["image_id"] for a in document["annotations"]] == ["good"]


def test_predict_keeps_nested_folders_and_refuses_duplicate_ids(trained, tmp_path, capsys):
    """Cityscapes' ``leftImg8bit/val/<city>/``: outputs under the same relative folders."""
    sources = sorted((trained["root"] / "leftImg8bit/val").rglob("*.png"))
    images = tmp_path / "leftImg8bit" / "val"
    for city, source in zip(("aachen", "bonn"), sources, strict=True):
        (images / city).mkdir(parents=True)
        shutil.copy(source, images / city / source.name.replace("synthetic", city))
    out = tmp_path / "out"
    args = ["predict", "--checkpoint", str(trained["checkpoint"]), "--images", str(images),
            "--out", str(out)]  # fmt: skip
    assert main(args) == 0
    document = read_panoptic_json(out / "panoptic.json")
    names = sorted(a["file_name"] for a in document["annotations"])
    assert [name.split("/")[0] for name in names] == ["aachen", "bonn"]
    for name in names:
        assert read_panoptic_png(out / "panoptic" / name).shape == (48, 80)
        assert (out / "overlays" / name).is_file()
    # the same file name in two cities: one id for two images, refused before any work
    shutil.copy(next((images / "aachen").iterdir()), images / "bonn")
    _one_line_error([*args[:-1], str(tmp_path / "out2")], "have the same image id", capsys)
    assert not (tmp_path / "out2").exists()


def test_evaluate_a_checkpoint_on_a_cityscapes_layout_in_one_command(trained, tmp_path, capsys):
    predictions = tmp_path / "predictions"
    args = ["evaluate", "--checkpoint", str(trained["checkpoint"]), "--data",
            str(trained["root"]), "--predictions", str(predictions), "--thing-area", "0",
            "--stuff-area", "0"]  # fmt: skip
    capsys.readouterr()
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "(panoptic output)" in printed and "(semantic argmax, the Cityscapes" in printed
    assert "Things" in printed
    report = json.loads((predictions / "panoptic_evaluation.json").read_text())
    assert report["images"] == 2 and (predictions / "panoptic" / "synthetic").is_dir()
    assert 0 <= report["miou_semantic"]["miou"] <= 1
    # the same numbers as predict's files given to evaluate
    gt_json = trained["root"] / "gtFine/cityscapes_panoptic_val_trainId.json"
    expected = panoptic_quality(gt_json, gt_json.with_suffix(""), predictions / "panoptic.json",
                                predictions / "panoptic")  # fmt: skip
    assert report["pq"]["All"]["pq"] == pytest.approx(expected["All"]["pq"])
    assert "(Cityscapes)" in printed and 0 <= report["cityscapes_ap"]["ap"] <= 1
    _one_line_error(args[:3], "--checkpoint needs --data", capsys)
    _one_line_error([*args[:4], str(tmp_path)], "has no leftImg8bit/val folder", capsys)


def test_the_ground_truth_as_prediction_has_a_cityscapes_ap_of_one(trained):
    # through either ground truth: train ids must be mapped to the label ids of instanceIds
    from gpucops.cli.evaluate import cityscapes_instance_ap

    root = trained["root"]
    for name in ("cityscapes_panoptic_val_trainId.json", "cityscapes_panoptic_val.json"):
        gt_json = root / "gtFine" / name
        ap = cityscapes_instance_ap(root, "val", gt_json, gt_json, gt_json.with_suffix(""))
        assert ap["ap"] == pytest.approx(1.0), (name, ap)
    with pytest.raises(FileNotFoundError, match=r"_gtFine_instanceIds\.png"):
        cityscapes_instance_ap(root, "train", gt_json, gt_json, gt_json.with_suffix(""))


def test_semantic_maps_equal_to_the_ground_truth_score_an_miou_of_one(trained, tmp_path):
    """The official (semantic argmax) mIoU reads predict's ``semantic/`` label PNGs by the
    predictions' file names and scores them against the ground truth's category maps."""
    from gpucops.data import write_label_png
    from gpucops.metrics import evaluate_panoptic

    gt_json = trained["root"] / "gtFine/cityscapes_panoptic_val_trainId.json"
    document = read_panoptic_json(gt_json)
    for annotation in document["annotations"]:
        ids = read_panoptic_png(gt_json.with_suffix("") / annotation["file_name"])
        labels = np.zeros(ids.shape, np.int64)
        for segment in annotation["segments_info"]:
            labels[ids == segment["id"]] = segment["category_id"]
        write_label_png(tmp_path / "semantic" / annotation["file_name"], labels)
    result = evaluate_panoptic(gt_json, gt_json.with_suffix(""), gt_json, gt_json.with_suffix(""),
                               ap=False, semantic_dir=tmp_path / "semantic")  # fmt: skip
    assert result["miou_semantic"]["miou"] == pytest.approx(1.0)
    scores = list(result["miou_semantic"]["per_class"].values())
    assert None in scores  # classes in no image: no score (the tiny set has few classes)
    assert all(v is None or v == pytest.approx(1.0) for v in scores)
