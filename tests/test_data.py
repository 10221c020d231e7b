"""The synthetic Cityscapes-layout generator and the Cityscapes panoptic loader."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gpucops.data import CityscapesPanoptic, CocoPanoptic
from gpucops.data.synthetic_cityscapes import write_synthetic_cityscapes
from gpucops.grid import cut_maps
from gpucops.metrics import panoptic_quality

DISTANCES = (1, 4, 8)


@pytest.fixture(scope="module")
def dataset_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic")
    return write_synthetic_cityscapes(root, num_images=3, height=64, width=128, progress=False)


def test_generator_writes_the_cityscapes_layout(dataset_root, tmp_path):
    city = dataset_root / "leftImg8bit" / "train" / "synthetic"
    assert len(list(city.glob("*_leftImg8bit.png"))) == 3
    gt = dataset_root / "gtFine"
    assert len(list((gt / "train" / "synthetic").glob("*_gtFine_instanceIds.png"))) == 3
    for suffix in ("", "_trainId"):
        assert (gt / f"cityscapes_panoptic_train{suffix}.json").is_file()
        assert len(list((gt / f"cityscapes_panoptic_train{suffix}").glob("*.png"))) == 3
    # image i does not depend on how many images are written
    alone = write_synthetic_cityscapes(tmp_path, num_images=1, height=64, width=128, progress=False)
    name = "synthetic_000000_000000_leftImg8bit.png"
    first = np.array(Image.open(city / name))
    assert np.array_equal(first, np.array(Image.open(alone / "leftImg8bit/train/synthetic" / name)))
    # the ground truth against itself: PQ 1 (the official label-id files)
    files = (gt / "cityscapes_panoptic_train.json", gt / "cityscapes_panoptic_train")
    assert panoptic_quality(*files, *files)["All"]["pq"] == pytest.approx(1.0)


def test_loader_targets_follow_the_annotations(dataset_root):
    from cityscapesscripts.helpers.labels import id2label

    dataset = CityscapesPanoptic(dataset_root, distances=DISTANCES, thing_weight=4.0)
    assert len(dataset) == 3
    item = dataset[1]
    labels = np.array(
        Image.open(
            dataset_root / "gtFine/train/synthetic/synthetic_000000_000001_gtFine_labelIds.png"
        )
    )
    train_ids = np.vectorize(lambda i: id2label[int(i)].trainId)(labels)
    expected = torch.from_numpy(np.where((train_ids < 0) | (train_ids == 255), 255, train_ids))
    assert torch.equal(item["semantic"], expected)
    assert item["image"].shape == (3, 64, 128) and item["classes"].shape == (16, 32)
    # the image's raw pixels (the network normalises)
    image = Image.open(
        dataset_root / "leftImg8bit/train/synthetic/synthetic_000000_000001_leftImg8bit.png"
    )
    assert torch.equal(item["image"], torch.from_numpy(np.array(image)).permute(2, 0, 1).float())
    # stride-4 maps sample pixel (2 + 4i, 2 + 4j)
    assert torch.equal(item["classes"], torch.where(expected == 255, -1, expected)[2::4, 2::4])
    assert torch.equal(item["void"], item["classes"] < 0)
    assert (item["segments"][item["void"]] == -1).all()
    assert torch.equal(item["affinity_target"], cut_maps(item["segments"][None], DISTANCES)[0])
    assert torch.equal(item["semantic_weight"] == 0, expected == 255)  # void weighs nothing
    small = CityscapesPanoptic(dataset_root, distances=DISTANCES, small_instance_weight=3.0)[1]
    assert (small["semantic_weight"] == 3.0).any()  # small things (all are, at 64×128)
    weight = item["affinity_weight"]
    assert set(weight.unique().tolist()) <= {0.0, 1.0, 4.0} and (weight == 4.0).any()
    # an edge with a void end has no weight
    void_rows = item["void"].any(dim=1).nonzero().flatten()
    assert not weight[0, void_rows[-1]].any() or void_rows.numel() == 0


def test_augmentation_is_seeded_and_consistent(dataset_root):
    kwargs = dict(distances=DISTANCES, crop_size=(48, 80), scale_range=(0.5, 1.5), flip=True)
    a, b = CityscapesPanoptic(dataset_root, **kwargs), CityscapesPanoptic(dataset_root, **kwargs)
    for index in range(3):
        x, y = a[index], b[index]
        assert x["image"].shape == (3, 48, 80) and x["semantic"].shape == (48, 80)
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["segments"], y["segments"])
    b.epoch = 1
    assert not torch.equal(a[0]["image"], b[0]["image"])  # a new draw per epoch
    plain = CityscapesPanoptic(dataset_root, distances=DISTANCES)[0]
    outcomes = set()
    for seed in range(8):  # seeded: the same outcomes on every run
        x = CityscapesPanoptic(dataset_root, distances=DISTANCES, flip=True, seed=seed)[0]
        flipped = not torch.equal(x["image"], plain["image"])
        expected = {k: plain[k].flip(-1) if flipped else plain[k] for k in ("image", "semantic")}
        assert torch.equal(x["image"], expected["image"])
        assert torch.equal(x["semantic"], expected["semantic"])
        outcomes.add(flipped)
    assert outcomes == {True, False}
    # a crop larger than the image pads with void
    big = CityscapesPanoptic(dataset_root, distances=DISTANCES, crop_size=(80, 160))[0]
    assert (big["semantic"][64:] == 255).all()


def test_missing_or_malformed_dataset_folders(tmp_path):
    with pytest.raises(FileNotFoundError, match="is not a CityscapesPanoptic folder"):
        CityscapesPanoptic(tmp_path)
    (tmp_path / "leftImg8bit" / "train").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="createPanopticImgs"):
        CityscapesPanoptic(tmp_path)
    (tmp_path / "gtFine").mkdir()
    (tmp_path / "gtFine" / "cityscapes_panoptic_train_trainId.json").write_text("{oops")
    with pytest.raises(ValueError, match="not valid JSON"):
        CityscapesPanoptic(tmp_path)
    with pytest.raises(ValueError, match="num_images"):
        write_synthetic_cityscapes(tmp_path, num_images=0)


def test_overlay_pictures(dataset_root, tmp_path):
    from gpucops.visualize import panoptic_colors, save_comparison

    item = CityscapesPanoptic(dataset_root, distances=DISTANCES)[0]
    partitionable = torch.arange(19) >= 11
    colors = panoptic_colors(item["classes"], item["segments"], partitionable)
    assert colors.shape == (16, 32, 3) and colors.dtype == np.uint8
    assert (colors[item["void"].numpy()] == 0).all()
    image = np.array(
        Image.open(
            dataset_root / "leftImg8bit/train/synthetic/synthetic_000000_000000_leftImg8bit.png"
        )
    )
    labeling = (item["classes"], item["segments"])
    save_comparison(tmp_path / "c.png", image, [labeling, labeling], partitionable)
    assert Image.open(tmp_path / "c.png").size == (3 * 128, 64)


def _coco_from(cityscapes_root, root):
    """A COCO-layout copy of the synthetic set: ids shifted (+100, non-contiguous), images
    listed in the JSON, PNGs in annotations/panoptic_train2017."""
    import json
    import shutil

    source = json.loads((cityscapes_root / "gtFine/cityscapes_panoptic_train.json").read_text())
    (root / "train2017").mkdir(parents=True)
    (root / "annotations/panoptic_train2017").mkdir(parents=True)
    images, annotations = [], []
    for index, annotation in enumerate(source["annotations"]):
        city = annotation["image_id"].split("_")[0]
        image = (
            cityscapes_root
            / "leftImg8bit/train"
            / city
            / f"{annotation['image_id']}_leftImg8bit.png"
        )
        shutil.copy(image, root / "train2017" / f"{index:012d}.png")
        shutil.copy(
            cityscapes_root / "gtFine/cityscapes_panoptic_train" / annotation["file_name"],
            root / "annotations/panoptic_train2017" / f"{index:012d}.png",
        )
        images.append({"id": index, "file_name": f"{index:012d}.png"})
        segments = [
            {**s, "category_id": s["category_id"] + 100} for s in annotation["segments_info"]
        ]
        annotations.append(
            {"image_id": index, "file_name": f"{index:012d}.png", "segments_info": segments}
        )
    categories = [{**c, "id": c["id"] + 100} for c in source["categories"]]
    document = {"images": images, "annotations": annotations, "categories": categories}
    (root / "annotations/panoptic_train2017.json").write_text(json.dumps(document))
    return categories


def test_coco_loader(dataset_root, tmp_path):
    categories = _coco_from(dataset_root, tmp_path)
    coco = CocoPanoptic(tmp_path, distances=DISTANCES)
    cityscapes = CityscapesPanoptic(dataset_root, distances=DISTANCES)
    assert len(coco) == 3 and coco.num_classes == len(categories)
    assert coco.class_names == [c["name"] for c in sorted(categories, key=lambda c: c["id"])]
    # same pictures and segments; classes are the categories' contiguous indices (here the
    # label-id categories in id order, which for Cityscapes is train-id order)
    for index in range(3):
        x, y = coco[index], cityscapes[index]
        assert torch.equal(x["image"], y["image"])
        assert torch.equal(x["segments"], y["segments"])
        assert torch.equal(x["classes"], y["classes"])
    with pytest.raises(FileNotFoundError, match="CocoPanoptic folder"):
        CocoPanoptic(tmp_path, split="val")


def test_voc_sample():
    from gpucops.data.voc_sample import voc_sample

    sample = voc_sample()
    classes, segments = sample["classes"], sample["segments"]
    assert sample["image"].shape == (*classes.shape, 3) and len(sample["class_names"]) == 21
    assert torch.equal(classes < 0, segments < 0)
    assert (classes[segments == 0] == 0).all()  # background: one stuff segment
    for segment in segments.unique().tolist():
        if segment > 0:  # every instance has one thing class
            assert classes[segments == segment].unique().numel() == 1
            assert sample["partitionable"][classes[segments == segment][0]]
    assert segments.max() >= 10  # a crowded scene
