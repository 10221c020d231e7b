"""The COPS network (Abbas & Swoboda, NeurIPS 2021, arXiv 2106.03188; official code: the
``aabbas90/COPS`` repository, ``affinityNet/panoptic_affinity/panoptic_seg_affinity.py``): a
ResNet backbone, two DeepLabV3+ decoders (semantic, affinity), the semantic head, and the affinity
head with one classifier per edge distance — d = 1 reads the affinity features directly, d > 1
reads the centre-matched feature differences S_d of :func:`gpucops.kernels.edge_feature_shift`.

Outputs at stride 4: ``semantic_logits [B, K, H/4, W/4]`` and ``affinity_logits [B, 2·|D|, H/4,
W/4]`` (channel 2i: row edges of distance i, 2i + 1: col edges; a high logit = "cut"), the
layouts :class:`gpucops.layer.AMWCLayer` takes.

Inputs are raw RGB images (uint8, or float in 0–255). The network normalises them itself with its
``pixel_mean`` / ``pixel_std`` buffers, as detectron2's models (the official one among them) do,
so the data pipeline and the inference cannot normalise twice or differently.

ASPP's image pooling averages over a window of the training crop's size
(``ModelConfig.pool_size``, detectron2's ``pool_kernel_size``, as the official head does): global
on a crop-sized input; on a larger one an average with stride 1 over every crop-sized window,
upsampled bilinearly to the feature map. Without ``pool_size`` it is global average pooling.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ..kernels import edge_feature_shift
from .resnet import ResNet

__all__ = ["COPSNet", "ModelConfig"]

# ImageNet statistics of RGB pixels in 0–255 (detectron2's and the official configs' defaults)
PIXEL_MEAN = (123.675, 116.28, 103.53)
PIXEL_STD = (58.395, 57.12, 57.375)


@dataclass
class ModelConfig:
    """Sizes of the network. The defaults are COPS' (ResNet-50, 256-channel decoders and heads);
    :meth:`tiny` is a small model for CPU runs and tests."""

    num_classes: int = 19
    distances: tuple[int, ...] = (1, 4, 16, 32, 64)
    depth: int = 50  # ResNet-18/34/50/101
    stem: str = "torchvision"  # or "deeplab" (three 3×3 convolutions; COPS' R-52)
    stride_in_1x1: bool = False  # True for the MSRA Caffe2 weights (detectron2's STRIDE_IN_1X1)
    widths: tuple[int, int, int, int] = (64, 128, 256, 512)
    aspp_channels: int = 256
    decoder_channels: int = 256
    project_channels: tuple[int, int] = (32, 64)  # res2, res3
    head_channels: int = 256
    classifier_channels: tuple[int, int] = (128, 64)  # d > 1; d = 1 uses half of each
    aspp_dilations: tuple[int, ...] = (6, 12, 18)
    dropout: float = 0.1
    # the decoders' fusion after each skip connection: "separable3x3x2" (two depthwise-separable
    # 3×3 convolutions) or "separable5x5" (one depthwise-separable 5×5 convolution, detectron2's
    # DeepLabV3PlusHead with use_depthwise_separable_conv, as COPS' and Panoptic-DeepLab's
    # published networks: needed to import their weights)
    decoder_fuse: str = "separable3x3x2"
    # ASPP image pooling window in input pixels: the training crop (detectron2's
    # pool_kernel_size), so the pooling is global on training crops and keeps that window on
    # larger inference images; None: always global
    pool_size: tuple[int, int] | None = None
    pixel_mean: tuple[float, float, float] = PIXEL_MEAN  # subtracted from the RGB input
    pixel_std: tuple[float, float, float] = PIXEL_STD  # then divided by

    @classmethod
    def preset(cls, name: str, **fields) -> ModelConfig:
        """``"full"`` (COPS' sizes: the defaults) or ``"tiny"`` (:meth:`tiny`), with ``fields``
        (e.g. ``num_classes``, ``distances``) set."""
        if name == "full":
            return cls(**fields)
        if name == "tiny":
            return cls.tiny(**fields)
        raise ValueError(f"model must be 'tiny' or 'full', got {name!r}")

    @classmethod
    def tiny(
        cls, num_classes: int = 19, distances: tuple[int, ...] = (1, 4, 16, 32), **overrides
    ) -> ModelConfig:
        sizes = dict(
            depth=18, widths=(16, 32, 64, 128), aspp_channels=32, decoder_channels=32,
            project_channels=(8, 16), head_channels=32, classifier_channels=(16, 8),
            aspp_dilations=(2, 4, 6),
        )  # fmt: skip
        return cls(num_classes, tuple(distances), **{**sizes, **overrides})


def _conv(cin: int, cout: int, kernel: int = 3, dilation: int = 1, groups: int = 1) -> nn.Module:
    """Convolution + batch norm + ReLU."""
    padding = dilation * (kernel // 2)
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(),
    )


def _separable(cin: int, cout: int, dilation: int = 1, kernel: int = 3) -> nn.Module:
    """Depthwise ``kernel``×``kernel`` then pointwise 1×1, each with batch norm and ReLU."""
    return nn.Sequential(_conv(cin, cin, kernel, dilation, groups=cin), _conv(cin, cout, 1))


def _fuse(cin: int, cout: int, kind: str) -> nn.Module:
    """The convolutions after a skip connection (``ModelConfig.decoder_fuse``)."""
    if kind == "separable3x3x2":
        return nn.Sequential(_separable(cin, cout), _separable(cout, cout))
    if kind == "separable5x5":
        return _separable(cin, cout, kernel=5)
    raise ValueError(f"decoder_fuse must be 'separable3x3x2' or 'separable5x5', got {kind!r}")


class DeepLabV3PlusDecoder(nn.Module):
    """ASPP on res5, then two fusion steps with projected res3 and res2 → stride-4 features."""

    def __init__(self, channels: dict[str, int], config: ModelConfig):
        super().__init__()
        aspp, out = config.aspp_channels, config.decoder_channels
        res5 = channels["res5"]
        self.aspp = nn.ModuleList(
            [_conv(res5, aspp, 1)] + [_separable(res5, aspp, d) for d in config.aspp_dilations]
        )
        # no batch norm after the image pooling (as detectron2's ASPP): one value per channel
        # would make training with one image per process impossible
        self.pool = nn.Sequential(nn.Conv2d(res5, aspp, 1), nn.ReLU())
        self.pool_window = None
        if config.pool_size is not None:  # res5 is at output stride 16
            self.pool_window = tuple(-(-size // 16) for size in config.pool_size)
        self.aspp_project = nn.Sequential(
            _conv(aspp * (len(config.aspp_dilations) + 2), aspp, 1), nn.Dropout(config.dropout)
        )
        low2, low3 = config.project_channels
        self.project3, self.project2 = (
            _conv(channels["res3"], low3, 1),
            _conv(channels["res2"], low2, 1),
        )
        self.fuse3 = _fuse(aspp + low3, out, config.decoder_fuse)
        self.fuse2 = _fuse(out + low2, out, config.decoder_fuse)

    def forward(self, features: dict[str, torch.Tensor]) -> torch.Tensor:
        res5 = features["res5"]
        size = res5.shape[-2:]
        window = size if self.pool_window is None else torch.Size(self.pool_window)
        if window[0] >= size[0] and window[1] >= size[1]:
            pooled = self.pool(F.adaptive_avg_pool2d(res5, 1)).expand(-1, -1, *size)
        else:
            window = (min(window[0], size[0]), min(window[1], size[1]))
            pooled = self.pool(F.avg_pool2d(res5, window, stride=1))
            pooled = F.interpolate(pooled, size, mode="bilinear", align_corners=False)
        x = self.aspp_project(torch.cat([branch(res5) for branch in self.aspp] + [pooled], 1))
        for project, fuse, name in (
            (self.project3, self.fuse3, "res3"),
            (self.project2, self.fuse2, "res2"),
        ):
            low = project(features[name])
            x = F.interpolate(x, low.shape[-2:], mode="bilinear", align_corners=False)
            x = fuse(torch.cat([x, low], 1))
        return x


class COPSNet(nn.Module):
    """Pixel normalisation, backbone, decoders and heads; ``forward(images [B, 3, H, W])`` →
    (semantic logits, affinity logits) at stride 4."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        if not config.distances or config.distances[0] != 1:
            raise ValueError(f"distances must start with 1 (COPS layouts), got {config.distances}")
        for name in ("pixel_mean", "pixel_std"):
            values = torch.tensor(getattr(config, name), dtype=torch.float32)
            if values.shape != (3,) or (name == "pixel_std" and not (values > 0).all()):
                raise ValueError(f"{name} must be 3 values (std > 0), got {getattr(config, name)}")
            # not persistent: the values are the config's (stored with it in a checkpoint), and
            # checkpoints written before the network normalised load unchanged
            self.register_buffer(name, values.view(3, 1, 1), persistent=False)
        self.backbone = ResNet(
            config.depth, config.stem, config.widths, stride_in_1x1=config.stride_in_1x1
        )
        channels = self.backbone.channels
        head, k = config.head_channels, config.num_classes
        self.semantic_decoder = DeepLabV3PlusDecoder(channels, config)
        self.semantic_head = nn.Sequential(_conv(config.decoder_channels, head), _conv(head, head))
        self.semantic_predictor = nn.Conv2d(head, k, 1)
        nn.init.normal_(self.semantic_predictor.weight, std=0.001)
        nn.init.zeros_(self.semantic_predictor.bias)
        self.affinity_decoder = DeepLabV3PlusDecoder(channels, config)
        self.affinity_head = nn.Sequential(
            _conv(config.decoder_channels + k, head), _conv(head, head)
        )
        wide, narrow = config.classifier_channels
        self.classifiers = nn.ModuleList()
        for d in config.distances:
            if d == 1:
                body = nn.Sequential(_conv(head, wide // 2), _conv(wide // 2, narrow // 2))
                last = nn.Conv2d(narrow // 2, 2, 1)
            else:  # row and col differences in two groups; the last layer mixes them
                body = nn.Sequential(_conv(2 * head, wide, groups=2), _conv(wide, narrow, groups=2))
                last = nn.Conv2d(narrow, 2, 1)
            self.classifiers.append(nn.ModuleDict({"body": body, "last": last}))

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """Raw RGB ``images [B, 3, H, W]`` (uint8, or float in 0–255) → ``(images − pixel_mean) /
        pixel_std`` in the buffers' dtype."""
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"images must be [B, 3, H, W] RGB, got {tuple(images.shape)}")
        return (images.to(self.pixel_mean.dtype) - self.pixel_mean) / self.pixel_std

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Raw RGB ``images [B, 3, H, W]`` (uint8, or float in 0–255; normalised here) →
        ``semantic [B, K, H/4, W/4]``, ``affinity [B, 2·|D|, H/4, W/4]`` logits."""
        features = self.backbone(self.normalize(images))
        semantic = self.semantic_predictor(self.semantic_head(self.semantic_decoder(features)))
        affinity_features = self.affinity_head(
            torch.cat([self.affinity_decoder(features), semantic.detach()], 1)
        )
        shifted = edge_feature_shift(affinity_features, self.config.distances[1:])
        inputs = (affinity_features, *shifted)
        affinity = torch.cat(
            [c["last"](c["body"](x)) for c, x in zip(self.classifiers, inputs, strict=True)], 1
        )
        return semantic, affinity
