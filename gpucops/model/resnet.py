"""ResNet backbones with torchvision's parameter names, at output stride 16 (DeepLab).

``resnet(depth)`` builds ResNet-18/34/50/101 whose ``state_dict`` keys and shapes are those of
``torchvision.models.resnet*`` (without ``fc``), so an ImageNet checkpoint saved by torchvision
loads from a local file (:func:`load_backbone_weights`; torchvision itself is not needed). res5
is dilated (rate 2, multi-grid 1, 2, 4 on its three blocks) instead of strided, as in the COPS
configs. The DeepLab stem (three 3×3 convolutions, 128 channels) is an option; it has no
torchvision counterpart. ``widths`` scales every stage for small CPU models.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["ResNet", "load_backbone_weights", "resnet"]


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(
        self, inplanes, planes, stride=1, dilation=1, downsample=None, norm=nn.BatchNorm2d,
        stride_in_1x1=False,
    ):  # fmt: skip
        super().__init__()  # stride_in_1x1: no 1×1 convolution here, so nothing to choose
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, dilation, dilation, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, dilation, dilation, bias=False)
        self.bn2 = norm(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(
        self, inplanes, planes, stride=1, dilation=1, downsample=None, norm=nn.BatchNorm2d,
        stride_in_1x1=False,
    ):  # fmt: skip
        super().__init__()
        # stride in the 3×3 convolution by default (torchvision's ResNet v1.5; STRIDE_IN_1X1
        # False in COPS); in the 1×1 one for weights trained so (the MSRA Caffe2 ResNets)
        first, second = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, first, bias=False)
        self.bn1 = norm(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, second, dilation, dilation, bias=False)
        self.bn2 = norm(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = norm(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


_LAYOUTS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
            50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}  # fmt: skip


class ResNet(nn.Module):
    """Returns the features ``res2`` (stride 4), ``res3`` (8), ``res4`` (16), ``res5`` (16)."""

    def __init__(
        self,
        depth: int = 50,
        stem: str = "torchvision",
        widths: tuple[int, int, int, int] = (64, 128, 256, 512),
        multi_grid: tuple[int, ...] = (1, 2, 4),
        stride_in_1x1: bool = False,
    ):
        super().__init__()
        if depth not in _LAYOUTS:
            raise ValueError(f"depth must be one of {sorted(_LAYOUTS)}, got {depth}")
        if stem not in ("torchvision", "deeplab"):
            raise ValueError(f"stem must be 'torchvision' or 'deeplab', got {stem!r}")
        block, counts = _LAYOUTS[depth]
        self.stem_type = stem
        self.stride_in_1x1 = stride_in_1x1
        if stem == "torchvision":
            self.conv1 = nn.Conv2d(3, widths[0], 7, 2, 3, bias=False)
            self.bn1 = nn.BatchNorm2d(widths[0])
            self.inplanes = widths[0]
        else:  # DeepLab: 3×3 (stride 2) → 3×3 → 3×3, 64 · 2 = 128 channels for full widths
            mid, out = widths[0], 2 * widths[0]
            self.stem = nn.Sequential(
                nn.Conv2d(3, mid, 3, 2, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                nn.Conv2d(mid, mid, 3, 1, 1, bias=False), nn.BatchNorm2d(mid), nn.ReLU(),
                nn.Conv2d(mid, out, 3, 1, 1, bias=False), nn.BatchNorm2d(out),
            )  # fmt: skip
            self.inplanes = out
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        self.layer1 = self._make_layer(block, widths[0], counts[0], 1, (1,))
        self.layer2 = self._make_layer(block, widths[1], counts[1], 2, (1,))
        self.layer3 = self._make_layer(block, widths[2], counts[2], 2, (1,))
        # res5: dilation 2 with multi-grid instead of stride 2 → output stride 16
        self.layer4 = self._make_layer(
            block, widths[3], counts[3], 1, tuple(2 * g for g in multi_grid)
        )
        self.channels = {f"res{i + 2}": w * block.expansion for i, w in enumerate(widths)}

    def _make_layer(self, block, planes, count, stride, dilations):
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = []
        for i in range(count):
            dilation = dilations[i % len(dilations)]
            layers.append(
                block(self.inplanes, planes, stride if i == 0 else 1, dilation,
                      downsample if i == 0 else None, stride_in_1x1=self.stride_in_1x1)
            )  # fmt: skip
            self.inplanes = planes * block.expansion
        return nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.stem_type == "torchvision":
            x = self.relu(self.bn1(self.conv1(x)))
        else:
            x = self.relu(self.stem(x))
        res2 = self.layer1(self.maxpool(x))
        res3 = self.layer2(res2)
        res4 = self.layer3(res3)
        return {"res2": res2, "res3": res3, "res4": res4, "res5": self.layer4(res4)}


def resnet(depth: int = 50, **kwargs) -> ResNet:
    """A ResNet backbone (see :class:`ResNet`)."""
    return ResNet(depth, **kwargs)


def load_backbone_weights(backbone: ResNet, path: str | Path) -> None:
    """Load a torchvision ResNet checkpoint (a ``state_dict``, possibly with ``fc.*``) from a
    local file; every backbone parameter must be in it with its shape."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"backbone weights {path} do not exist")
    if backbone.stem_type != "torchvision":
        raise ValueError("torchvision weights fit the torchvision stem only (stem='torchvision')")
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    missing, unexpected = backbone.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise ValueError(
            f"{path} does not fit this ResNet: missing {missing[:5]}…, unexpected {unexpected[:5]}…"
        )
