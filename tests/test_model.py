"""The COPS network: torchvision-compatible backbone, output stride, heads, pre-training losses."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from gpucops.losses import affinity_pretraining_loss, semantic_pretraining_loss
from gpucops.model import COPSNet, ModelConfig, load_backbone_weights, resnet


def test_resnet50_has_torchvisions_parameter_names_and_shapes():
    state = resnet(50).state_dict()
    # torchvision's resnet50 state_dict has 320 entries, 2 of them fc
    assert len(state) == 318
    assert state["conv1.weight"].shape == (64, 3, 7, 7)
    assert state["layer1.0.downsample.0.weight"].shape == (256, 64, 1, 1)
    assert state["layer4.2.conv3.weight"].shape == (2048, 512, 1, 1)
    assert state["layer3.5.bn2.running_var"].shape == (256,)


def test_output_stride_16_with_multi_grid():
    backbone = resnet(50)
    features = backbone(torch.zeros(1, 3, 64, 96))
    assert features["res2"].shape[-2:] == (16, 24) and features["res5"].shape[-2:] == (4, 6)
    assert [block.conv2.dilation for block in backbone.layer4] == [(2, 2), (4, 4), (8, 8)]
    deeplab = resnet(50, stem="deeplab")
    assert deeplab.stem[6].out_channels == 128
    assert deeplab(torch.zeros(1, 3, 64, 96))["res5"].shape[-2:] == (4, 6)


def test_backbone_weights_load_from_a_local_file(tmp_path):
    source = resnet(18)
    state = {
        **source.state_dict(),
        "fc.weight": torch.zeros(1000, 512),
        "fc.bias": torch.zeros(1000),
    }
    torch.save(state, tmp_path / "r18.pth")
    target = resnet(18)
    load_backbone_weights(target, tmp_path / "r18.pth")
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)
    with pytest.raises(ValueError, match="does not fit"):
        load_backbone_weights(resnet(34), tmp_path / "r18.pth")
    with pytest.raises(FileNotFoundError):
        load_backbone_weights(target, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match="torchvision stem"):
        load_backbone_weights(resnet(18, stem="deeplab"), tmp_path / "r18.pth")


def test_network_outputs_and_gradient_paths():
    torch.manual_seed(0)
    config = ModelConfig.tiny(num_classes=5, distances=(1, 4, 8))
    model = COPSNet(config)
    semantic, affinity = model(torch.randn(2, 3, 64, 96))
    assert semantic.shape == (2, 5, 16, 24) and affinity.shape == (2, 6, 16, 24)
    # the affinity branch reads the semantic logits detached: its loss leaves the semantic
    # predictor alone
    affinity.square().mean().backward()
    assert model.semantic_predictor.weight.grad is None
    assert model.classifiers[2]["body"][0][0].weight.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="start with 1"):
        COPSNet(ModelConfig.tiny(distances=(4, 8)))


def test_the_network_normalises_raw_pixels_once_with_its_buffers():
    """uint8 and float 0–255 inputs give the same logits; they equal those of a network without
    normalisation (mean 0, std 1) fed the normalised image; the statistics are config, not
    weights (a state dict without them loads)."""
    torch.manual_seed(0)
    model = COPSNet(ModelConfig.tiny(num_classes=3, distances=(1, 4))).eval()
    identity = COPSNet(
        ModelConfig.tiny(num_classes=3, distances=(1, 4), pixel_mean=(0, 0, 0), pixel_std=(1, 1, 1))
    ).eval()
    identity.load_state_dict(model.state_dict())
    assert "pixel_mean" not in model.state_dict()
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    mean = torch.tensor(ModelConfig.pixel_mean).view(3, 1, 1)
    std = torch.tensor(ModelConfig.pixel_std).view(3, 1, 1)
    with torch.no_grad():
        raw = model(images)
        torch.testing.assert_close(model(images.float()), raw, rtol=0, atol=0)
        torch.testing.assert_close(identity((images.float() - mean) / std), raw, rtol=0, atol=0)
    with pytest.raises(ValueError, match="pixel_std"):
        COPSNet(ModelConfig.tiny(pixel_std=(1.0, 0.0, 1.0)))
    with pytest.raises(ValueError, match="images"):
        model(images[:, :1])


def test_model_presets():
    assert ModelConfig.preset("full", num_classes=7) == ModelConfig(num_classes=7)
    assert ModelConfig.preset("tiny", distances=(1, 4)) == ModelConfig.tiny(distances=(1, 4))
    with pytest.raises(ValueError, match="model must be"):
        ModelConfig.preset("huge")


def test_one_image_per_process_trains():
    """No batch norm after the ASPP's global pooling: a batch of one trains."""
    model = COPSNet(ModelConfig.tiny(num_classes=3, distances=(1, 4))).train()
    semantic, affinity = model(torch.randn(1, 3, 64, 64))
    (semantic.mean() + affinity.mean()).backward()


def test_aspp_pooling_window_is_the_training_crop():
    """With ``pool_size`` = the crop, the image pooling is global on a crop-sized input and a
    crop-sized window (not global) on a larger one."""
    torch.manual_seed(0)
    cropped = COPSNet(ModelConfig.tiny(num_classes=3, distances=(1, 4), pool_size=(64, 64)))
    plain = COPSNet(ModelConfig.tiny(num_classes=3, distances=(1, 4)))
    plain.load_state_dict(cropped.state_dict())
    cropped.eval(), plain.eval()
    crop = torch.randn(1, 3, 64, 64)
    torch.testing.assert_close(cropped(crop), plain(crop))
    large = torch.randn(1, 3, 128, 192)
    decoder = cropped.semantic_decoder
    pooled = []
    decoder.pool.register_forward_hook(lambda module, inputs, output: pooled.append(inputs[0]))
    features = cropped.backbone(large)
    assert features["res5"].shape[-2:] == (8, 12) and decoder.pool_window == (4, 4)
    decoder(features)
    expected = torch.nn.functional.avg_pool2d(features["res5"], 4, stride=1)  # 5×9 windows
    torch.testing.assert_close(pooled[-1], expected)
    assert cropped(large)[0].shape == (1, 3, 32, 48)


def test_full_size_model_has_the_papers_parameter_count():
    # supplementary Table 3: 34M parameters on Cityscapes
    count = sum(p.numel() for p in COPSNet(ModelConfig()).parameters())
    assert 33.5e6 < count < 34.5e6


def test_pretraining_losses():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 4, 4, 6, generator=g, requires_grad=True)
    target = torch.randint(0, 4, (2, 16, 24), generator=g)
    target[0, :3] = 255
    full = semantic_pretraining_loss(logits, target, top_k=1.0)
    upsampled = F.interpolate(logits, (16, 24), mode="bilinear", align_corners=False)
    torch.testing.assert_close(full, F.cross_entropy(upsampled, target, ignore_index=255))
    hard = semantic_pretraining_loss(logits, target, top_k=0.2)
    assert hard > full  # the hardest fifth
    affinity = torch.randn(2, 4, 4, 6, generator=g)
    cut = (torch.rand(2, 4, 4, 6, generator=g) > 0.5).float()
    weights = torch.ones_like(cut)
    plain = affinity_pretraining_loss(affinity, cut, weights, top_k=1.0, loss_weight=1.0)
    per_channel = [F.binary_cross_entropy_with_logits(affinity[:, c], cut[:, c]) for c in range(4)]
    torch.testing.assert_close(plain, sum(per_channel))
    assert affinity_pretraining_loss(affinity, cut, weights * 0).item() == 0
    with pytest.raises(ValueError, match="top_k"):
        semantic_pretraining_loss(logits, target, top_k=0)
