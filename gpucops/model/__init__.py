"""The COPS network: ResNet backbone (torchvision names), DeepLabV3+ decoders, heads."""

from .cops_net import COPSNet, ModelConfig
from .resnet import ResNet, load_backbone_weights, resnet

__all__ = ["COPSNet", "ModelConfig", "ResNet", "load_backbone_weights", "resnet"]
