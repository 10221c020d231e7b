"""The COPS network: ResNet backbone (torchvision names), DeepLabV3+ decoders, heads; published
weights imported by an explicit key map (:mod:`gpucops.model.weights`)."""

from .cops_net import COPSNet, ModelConfig
from .resnet import ResNet, load_backbone_weights, resnet
from .weights import ImportReport, load_pretrained, map_weights, read_weights

__all__ = [
    "COPSNet", "ImportReport", "ModelConfig", "ResNet", "load_backbone_weights",
    "load_pretrained", "map_weights", "read_weights", "resnet",
]  # fmt: skip
