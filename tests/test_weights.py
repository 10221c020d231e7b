"""Weight import: detectron2 / MSRA / official COPS files into COPSNet by the explicit key map,
read without running code from them."""

from __future__ import annotations

import dataclasses
import os
import pickle

import pytest
import torch
import torch.nn.functional as F
from detectron2_states import (
    affinity_shapes,
    caffe2_names,
    random_state,
    resnet_shapes,
    semantic_shapes,
)

from gpucops.cli import main
from gpucops.layer import AMWCLayer
from gpucops.model import COPSNet, ModelConfig
from gpucops.model.safe_pickle import load_pickle
from gpucops.model.weights import load_pretrained, map_weights, read_weights
from gpucops.trainer import TrainConfig, model_config

# the official architecture at tiny widths: DeepLab stem, ResNet-50 layout, 5×5 fusion
OFFICIAL = dataclasses.replace(
    ModelConfig.tiny(num_classes=3, distances=(1, 4, 8)),
    depth=50, stem="deeplab", decoder_fuse="separable5x5",
)  # fmt: skip


def _fingerprint(tensor: torch.Tensor) -> bytes:
    """The same for a tensor and any reordering of its values."""
    return tensor.detach().double().flatten().sort().values.numpy().round(6).tobytes()


def _every_tensor_landed(source: dict, net: COPSNet, prefixes: tuple[str, ...], skip=()) -> None:
    prints = {_fingerprint(torch.as_tensor(v)) for v in source.values()}
    checked = 0
    for key, value in net.state_dict().items():
        if key.startswith(prefixes) and not any(part in key for part in ("num_batches", *skip)):
            assert _fingerprint(value) in prints, key
            checked += 1
    assert checked > 50


def _pickle(path, obj) -> None:
    path.write_bytes(pickle.dumps(obj, protocol=2))


def test_the_pickle_reader_refuses_any_other_global(tmp_path):
    class Payload:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "ran"),))

    _pickle(tmp_path / "evil.pkl", {"model": {"stem.conv1.weight": Payload()}})
    with pytest.raises(ValueError, match=r"evil.pkl cannot be read safely: refuses global"):
        load_pickle(tmp_path / "evil.pkl")
    assert not (tmp_path / "ran").exists()
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps({"a": 1})[:5])
    with pytest.raises(ValueError, match=r"cut\.pkl cannot be read safely"):
        read_weights(tmp_path / "cut.pkl")
    with pytest.raises(FileNotFoundError):
        read_weights(tmp_path / "missing.pkl")


def test_deeplab_r52_pkl_loads_into_the_deeplab_stem(tmp_path):
    """detectron2's ``DeepLab/R-52.pkl`` layout: ``{"model": {name: ndarray}, "__author__"}``."""
    state = random_state(resnet_shapes(OFFICIAL))
    arrays = {k: v.numpy() for k, v in state.items()}
    _pickle(tmp_path / "R-52.pkl", {"model": arrays, "__author__": "DeepLab"})
    net = COPSNet(OFFICIAL)
    report = load_pretrained(net, tmp_path / "R-52.pkl", parts=("net.backbone",))
    assert report.format == "detectron2" and report.loaded == len(state)
    _every_tensor_landed(state, net, ("backbone.",))
    own = net.state_dict()
    assert torch.equal(own["backbone.stem.6.weight"], state["stem.conv3.weight"])
    assert torch.equal(own["backbone.stem.7.running_var"], state["stem.conv3.norm.running_var"])
    assert torch.equal(own["backbone.layer3.5.bn2.bias"], state["res4.5.conv2.norm.bias"])
    assert torch.equal(
        own["backbone.layer4.0.downsample.1.weight"], state["res5.0.shortcut.norm.weight"]
    )
    with pytest.raises(ValueError, match="has the deeplab stem but the model's stem is"):
        load_pretrained(COPSNet(dataclasses.replace(OFFICIAL, stem="torchvision")),
                        tmp_path / "R-52.pkl")  # fmt: skip


def test_msra_caffe2_weights_see_the_same_pixels(tmp_path):
    """MSRA R-50: BGR, mean-subtracted unscaled input; scale/shift-only batch norms."""
    config = dataclasses.replace(OFFICIAL, stem="torchvision", stride_in_1x1=True)
    state = random_state(resnet_shapes(config, statistics=False))
    _pickle(tmp_path / "R-50.pkl", caffe2_names(state))
    net = COPSNet(config).eval()
    report = load_pretrained(net, tmp_path / "R-50.pkl", parts=("net.backbone",))
    assert report.format == "caffe2" and not report.notes
    assert any(k.startswith("fc1000") for k in report.skipped)
    _every_tensor_landed(state, net, ("backbone.",), skip=("backbone.conv1.", "running"))
    assert torch.equal(net.state_dict()["backbone.layer1.0.bn3.running_mean"], torch.zeros(64))
    image = torch.randint(0, 256, (1, 3, 32, 32)).float()
    mean = torch.tensor(config.pixel_mean).view(1, 3, 1, 1)
    theirs = F.conv2d((image - mean).flip(1), state["stem.conv1.weight"], stride=2, padding=3)
    theirs = theirs * state["stem.conv1.norm.weight"].view(1, -1, 1, 1)
    theirs = theirs + state["stem.conv1.norm.bias"].view(1, -1, 1, 1)
    backbone = net.backbone
    with torch.no_grad():
        ours = backbone.bn1(backbone.conv1(net.normalize(image)))
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-3)
    assert net.backbone.layer2[0].conv1.stride == (2, 2)  # stride_in_1x1 as MSRA trained
    plain = load_pretrained(COPSNet(dataclasses.replace(config, stride_in_1x1=False)),
                            tmp_path / "R-50.pkl", parts=("net.backbone",))  # fmt: skip
    assert "stride in the 1×1 convolution" in plain.notes[0]


def _official_checkpoint(config: ModelConfig, seed: int = 0) -> dict[str, torch.Tensor]:
    shapes = {
        **resnet_shapes(config, "backbone."), **semantic_shapes(config), **affinity_shapes(config),
        "pixel_mean": (3, 1, 1), "pixel_std": (3, 1, 1),
    }  # fmt: skip
    state = random_state(shapes, seed)
    state["pixel_mean"] = torch.tensor(config.pixel_mean).view(3, 1, 1)
    state["pixel_std"] = torch.tensor(config.pixel_std).view(3, 1, 1)
    return state


def _official_fuse(x: torch.Tensor, low: torch.Tensor, state: dict, name: str) -> torch.Tensor:
    """detectron2's fusion: cat([skip, upsampled]) → depthwise 5×5 → BN → ReLU → 1×1 → BN →
    ReLU (eval-mode batch norm)."""

    def norm(y, prefix):
        return F.batch_norm(
            y, state[f"{prefix}.norm.running_mean"], state[f"{prefix}.norm.running_var"],
            state[f"{prefix}.norm.weight"], state[f"{prefix}.norm.bias"],
        ).relu()  # fmt: skip

    y = torch.cat([low, x], 1)
    y = norm(F.conv2d(y, state[f"{name}.depthwise.weight"], padding=2, groups=y.shape[1]),
             f"{name}.depthwise")  # fmt: skip
    return norm(F.conv2d(y, state[f"{name}.pointwise.weight"]), f"{name}.pointwise")


def test_official_cops_checkpoint_loads_every_tensor_and_the_cost_scalars(tmp_path):
    state = _official_checkpoint(OFFICIAL)
    torch.save({"model": state, "iteration": 2999}, tmp_path / "model_0002999.pth")
    net = COPSNet(OFFICIAL).eval()
    layer = AMWCLayer(torch.tensor([False, True, True]), OFFICIAL.distances)
    report = load_pretrained(net, tmp_path / "model_0002999.pth", layer)
    assert report.format == "cops" and not report.initial
    assert report.skipped == ("amwc_layer.training_per_class_areas", "pixel_mean", "pixel_std")
    _every_tensor_landed(state, net, ("",))
    edge = [state[f"amwc_layer.edge_costs_weights.{i}"] for i in range(6)]
    torch.testing.assert_close(layer.edge_scales.data, torch.cat(edge[0::2]))
    torch.testing.assert_close(layer.edge_biases.data, torch.cat(edge[1::2]))
    assert layer.node_bias.item() == state["amwc_layer.seg_cost_weights.1"].item()
    # the fusion computes what detectron2's does (its input channels are reordered)
    decoder = net.semantic_decoder
    x = torch.randn(1, OFFICIAL.decoder_channels, 6, 6)
    low = torch.randn(1, OFFICIAL.project_channels[0], 6, 6)  # res2
    with torch.no_grad():
        ours = decoder.fuse2(torch.cat([x, low], 1))
    theirs = _official_fuse(x, low, state, "sem_seg_head.decoder.res2.fuse_conv")
    torch.testing.assert_close(ours, theirs, rtol=1e-4, atol=1e-4)


def test_panoptic_deeplab_checkpoint_leaves_the_affinity_branch_and_says_so(tmp_path):
    state = {
        k: v for k, v in _official_checkpoint(OFFICIAL).items()
        if not k.startswith(("AFF_EMBED_head.", "amwc_layer."))
    }  # fmt: skip
    state["ins_embed_head.center_predictor.weight"] = torch.zeros(1, 32, 1, 1)
    net = COPSNet(OFFICIAL)
    mapped, report = map_weights(state, net, source="pdl.pth")
    assert report.format == "panoptic-deeplab"
    assert report.initial == ("net.affinity_decoder", "net.affinity_head", "net.classifiers")
    assert "ins_embed_head.center_predictor.weight" in report.skipped
    assert "left at initialisation: net.affinity_decoder" in report.summary()
    assert not any(k.startswith("net.affinity") for k in mapped)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda s: s.update({"sem_seg_head.bogus.weight": torch.zeros(1)}),
         r"does not know or the model does not have: sem_seg_head\.bogus\.weight"),
        (lambda s: s.pop("backbone.res3.1.conv2.weight"),
         r"lack tensors of the model .*net\.backbone\.layer2\.1\.conv2\.weight"),
        (lambda s: s.update({"backbone.res4.6.conv1.weight": torch.zeros(1)}),  # a ResNet-101
         r"net\.backbone\.layer3\.6\.conv1\.weight"),
        (lambda s: s.update({"sem_seg_head.predictor.bias": torch.zeros(19)}),
         r"shapes differ .*net\.semantic_predictor\.bias \(19,\) vs the model's \(3,\)"),
        (lambda s: s.update({"pixel_std": torch.ones(3, 1, 1)}), "pixel_std .* differs"),
    ],
)  # fmt: skip
def test_unknown_missing_and_misshapen_keys_are_listed(change, message):
    state = _official_checkpoint(OFFICIAL)
    change(state)
    with pytest.raises(ValueError, match=message):
        map_weights(state, COPSNet(OFFICIAL), source="ckpt.pth")


def test_the_decoder_layout_must_match_and_inputs_are_not_modified():
    state = _official_checkpoint(OFFICIAL)
    before = {k: v.clone() for k, v in state.items()}
    with pytest.raises(ValueError, match="set decoder_fuse: separable5x5"):
        map_weights(state, COPSNet(dataclasses.replace(OFFICIAL, decoder_fuse="separable3x3x2")))
    map_weights(state, COPSNet(OFFICIAL))
    assert all(torch.equal(before[k], state[k]) for k in state)


def test_convert_command_writes_what_training_loads(tmp_path, capsys):
    state = _official_checkpoint(OFFICIAL)
    torch.save({"model": state}, tmp_path / "cops.pth")
    argv = ["convert", str(tmp_path / "cops.pth"), "--out", str(tmp_path / "cops.pt"),
            "--model", "tiny", "--num-classes", "3", "--distances", "1", "4", "8"]  # fmt: skip
    assert main(argv) == 0
    assert "cops weights" in capsys.readouterr().out
    direct, converted = COPSNet(OFFICIAL), COPSNet(OFFICIAL)
    load_pretrained(direct, tmp_path / "cops.pth")
    report = load_pretrained(converted, tmp_path / "cops.pt")
    assert report.format == "gpucops"
    for key, value in direct.state_dict().items():
        assert torch.equal(converted.state_dict()[key], value), key
    assert main([*argv[:-4], "--stem", "torchvision"]) == 1
    assert "set stem: deeplab" in capsys.readouterr().err


def test_architecture_keys_are_config_keys(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: full\n")
    config = TrainConfig.from_yaml(path, {"depth": 101, "stem": "deeplab"})
    model = model_config(config)
    assert (model.depth, model.stem, model.decoder_fuse) == (101, "deeplab", "separable3x3x2")
    assert model_config(TrainConfig.from_yaml(path)).depth == 50
