"""pytest-benchmark suite of the pipeline around the solver: a training item of the data loader,
the PQ accumulator of validation, and the whole ``Predictor`` (network, costs, solve, labels at
image size) at stride 4 and at full resolution.

Data: two synthetic Cityscapes-layout scenes of 512×1024 (``write_synthetic_cityscapes``; real
Cityscapes images are 1024×2048, so decoding a PNG costs a quarter of theirs). The item is
Cityscapes fine-tuning's (crop 512×1024 after scaling by 0.5–2, flip). The ``Predictor`` runs a
random-weight tiny network (K = 19, D = (1, 4, 16, 32, 64)) on a 256×512 crop: its costs are not
a trained network's, so its quality floor only catches a broken solve; the solver's own suite
carries the real floors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from suite import CITYSCAPES_DISTANCES, DEVICES
from torch import nn

from gpucops.checkpoint import model_entries, save_checkpoint
from gpucops.data import CityscapesPanoptic, read_image, write_synthetic_cityscapes
from gpucops.data.panoptic_files import panoptic_pairs
from gpucops.inference import Predictor, build_problem, solve_problem
from gpucops.layer import AMWCLayer
from gpucops.metrics import PanopticQuality
from gpucops.model import COPSNet, ModelConfig
from gpucops.objectives import improvement_ratio, trivial_objective
from gpucops.synthetic import class_roles

SCENE = (512, 1024)
CROP = (256, 512)  # the Predictor's images


@pytest.fixture(scope="module")
def scenes(tmp_path_factory, smoke):
    root = tmp_path_factory.mktemp("scenes")
    height, width = (64, 128) if smoke else SCENE
    return write_synthetic_cityscapes(root, 2, height, width, progress=False)


@pytest.fixture(scope="module")
def predictor_args(tmp_path_factory, scenes, smoke):
    """A random-weight tiny network's checkpoint, written as ``train/train.py`` writes one, and
    the images it predicts."""
    torch.manual_seed(0)
    _, partitionable = class_roles(19)
    distances = (1, 4) if smoke else CITYSCAPES_DISTANCES
    net = COPSNet(ModelConfig.tiny(num_classes=19, distances=distances))
    layer = AMWCLayer(partitionable, distances)
    path = tmp_path_factory.mktemp("checkpoint") / "checkpoint.pt"
    weights = nn.ModuleDict({"net": net, "layer": layer}).state_dict()
    save_checkpoint(path, {"module": weights, **model_entries(net, layer, None)})
    image = read_image(sorted((scenes / "leftImg8bit").rglob("*.png"))[0])
    return path, torch.from_numpy(image).permute(2, 0, 1)[None, :, : CROP[0], : CROP[1]]


def test_data_item(timer, scenes):
    dataset = CityscapesPanoptic(
        scenes, "train", crop_size=SCENE, scale_range=(0.5, 2.0), flip=True
    )
    item = timer(lambda: dataset[0], rounds=10)
    grid = (SCENE[0] // 4, SCENE[1] // 4)
    timer.record(segments=int(item["segments"].max()) + 1)
    assert item["image"].shape == (3, *SCENE) and item["classes"].shape == grid
    assert item["affinity_target"].shape == (2 * len(CITYSCAPES_DISTANCES), *grid)


@pytest.mark.parametrize("device", DEVICES)
def test_pq_accumulator(timer, scenes, device):
    """Validation's PQ over the scenes against their ground truth shifted by 8 pixels (so that
    segments match, partly, and some do not)."""
    gt_json = scenes / "gtFine" / "cityscapes_panoptic_train_trainId.json"
    folder = gt_json.with_suffix("")
    categories, pairs = panoptic_pairs(gt_json, folder, gt_json, folder)
    images = [
        (torch.from_numpy(ids).to(device), gt["segments_info"], torch.from_numpy(moved).to(device))
        for gt, ids, _, _ in pairs
        for moved in [np.roll(ids, 8, axis=1)]
    ]
    things = {c["id"]: bool(c["isthing"]) for c in categories}

    def accumulate(shifted: bool = True) -> dict:
        pq = PanopticQuality(things)
        for ids, segments, moved in images:
            pq.update(ids, segments, moved if shifted else ids, segments)
        return pq.compute()

    result = timer(accumulate, rounds=10)
    timer.record(pq=result["All"]["pq"], images=len(images))
    assert accumulate(shifted=False)["All"]["pq"] == 1.0  # the ground truth against itself
    assert 0 < result["All"]["pq"] < 1


@pytest.mark.parametrize("full", [False, True], ids=["stride4", "full"])
@pytest.mark.parametrize("device", DEVICES)
def test_predictor(timer, predictor_args, device, full):
    checkpoint, images = predictor_args
    predictor = Predictor(checkpoint, device)
    prediction = timer(lambda: predictor(images, full_resolution=full), rounds=5)
    layer = predictor.model.layer
    with torch.no_grad():  # the layer's cost scalars are parameters
        costs = layer.costs(prediction.semantic_logits, prediction.affinity_logits)
    size = images.shape[-2:]
    problem = build_problem(*costs, layer.partitionable, layer.distances, size, full).to("cpu")
    reference = solve_problem(problem, "sequential").objective
    objective = prediction.labeling.objective.cpu()
    quality = improvement_ratio(trivial_objective(*problem.inputs), objective, reference)
    resolution = "full" if full else "stride4"
    timer.check(
        f"predictor/{resolution}", float(quality.min()), objective=float(objective.sum()),
        model_s=prediction.seconds["model"], solver_s=prediction.seconds["solver"],
    )  # fmt: skip
