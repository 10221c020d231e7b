"""``gpucops convert``: published weights (detectron2's ``DeepLab/R-52.pkl``, the MSRA
``R-50.pkl``/``R-101.pkl``, torchvision ResNets, official COPS or Panoptic-DeepLab checkpoints)
into gpucops' names by the documented key map (``gpucops.model.weights``), checked against the
network the options describe: every tensor the file carries for it lands with its shape, and an
unknown or missing key is an error listing the keys. ``.pkl`` files are read without running
code from them (numpy arrays only). Writes a plain state dict (``net.*``, ``layer.*``) that
``backbone_weights`` / ``init_checkpoint`` of a training config take, and prints what was
loaded, skipped and left at initialisation.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from ..checkpoint import save_checkpoint
from ..layer import AMWCLayer
from ..model import COPSNet, ModelConfig, load_pretrained
from ..model.weights import PARTS

__all__ = ["HELP", "add_arguments", "run"]

HELP = "published weights (detectron2 .pkl, COPS checkpoints, …) into a gpucops weight file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("weights", help="the published file (.pkl, .pth)")
    parser.add_argument("--out", required=True, help="the gpucops weight file to write (.pt)")
    parser.add_argument("--model", default="full", choices=("full", "tiny"), help="size preset")
    parser.add_argument("--depth", type=int, default=50, help="ResNet depth (50: R-50/R-52)")
    parser.add_argument(
        "--stem", default="deeplab", choices=("deeplab", "torchvision"),
        help="deeplab: R-52 and the COPS / Panoptic-DeepLab checkpoints; torchvision: MSRA, "
        "torchvision",
    )  # fmt: skip
    parser.add_argument("--stride-in-1x1", action="store_true", help="as the MSRA weights")
    parser.add_argument(
        "--decoder-fuse", default="separable5x5", choices=("separable5x5", "separable3x3x2")
    )
    parser.add_argument("--num-classes", type=int, default=19, help="19 Cityscapes, 133 COCO")
    parser.add_argument(
        "--distances", type=int, nargs="+", default=[1, 4, 16, 32, 64],
        help="edge distances (Cityscapes 1 4 16 32 64, COCO 1 4 16 32)",
    )  # fmt: skip
    parser.add_argument("--backbone-only", action="store_true", help="keep the backbone only")


def run(args: argparse.Namespace) -> None:
    config = dataclasses.replace(
        ModelConfig.preset(args.model, num_classes=args.num_classes, distances=args.distances),
        depth=args.depth, stem=args.stem, stride_in_1x1=args.stride_in_1x1,
        decoder_fuse=args.decoder_fuse,
    )  # fmt: skip
    net = COPSNet(config)
    # the layer's thing classes are the dataset's (set by the training config), not weights
    layer = AMWCLayer(torch.zeros(args.num_classes, dtype=torch.bool), tuple(args.distances))
    parts = ("net.backbone",) if args.backbone_only else PARTS
    report = load_pretrained(net, args.weights, layer, parts)
    carried = [p for p in parts if p not in report.initial]
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    state.update({f"layer.{k}": v for k, v in layer.state_dict().items() if k != "partitionable"})
    save_checkpoint(args.out, {k: v for k, v in state.items() if k.startswith(tuple(carried))})
    print(report.summary())
    print(f"wrote {args.out} ({', '.join(carried)})")
