"""A small trained-model checkpoint for the inference tests, written without the trainer."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from gpucops.checkpoint import model_entries, save_checkpoint
from gpucops.layer import AMWCLayer
from gpucops.model import COPSNet, ModelConfig

PARTITIONABLE = torch.tensor([False, False, True])  # two stuff classes, one thing class
DISTANCES = (1, 4)


def write_tiny_checkpoint(path: Path, seed: int = 0) -> dict:
    """A random tiny network and layer (K = 3, D = (1, 4), non-default cost scalars) saved as
    ``train/train.py`` saves them; returns the state that was written."""
    torch.manual_seed(seed)
    net = COPSNet(ModelConfig.tiny(num_classes=3, distances=DISTANCES, pool_size=(64, 64)))
    layer = AMWCLayer(PARTITIONABLE, DISTANCES, lambda_range=(2.0, 9.0), num_samples=3)
    with torch.no_grad():
        layer.edge_scales.mul_(1.5)
        layer.node_bias.add_(0.25)
    module = nn.ModuleDict({"net": net, "layer": layer})  # the trainer's state-dict prefixes
    categories = [
        {"id": 7 + k, "name": f"c{k}", "isthing": int(thing)}
        for k, thing in enumerate(PARTITIONABLE.tolist())
    ]
    state = {"module": module.state_dict(), **model_entries(net, layer, categories)}
    save_checkpoint(path, state)
    return state
