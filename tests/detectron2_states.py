"""State dicts with the key names and shapes of detectron2's and the official COPS networks,
written out here from their module structure (detectron2 ``modeling/backbone/resnet.py``,
``projects/DeepLab/deeplab/{resnet,semantic_seg}.py``, ``layers/aspp.py``; COPS
``panoptic_affinity/panoptic_seg_affinity.py``), independently of gpucops' key map."""

from __future__ import annotations

import torch

from gpucops.model import ModelConfig

COUNTS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3)}


class _Shapes(dict):
    def conv_norm(self, name: str, cout: int, cin: int, kernel: int, statistics: bool = True):
        """detectron2's ``Conv2d(..., norm=BN)``: ``name.weight`` and ``name.norm.*``."""
        self[f"{name}.weight"] = (cout, cin, kernel, kernel)
        for entry in ("weight", "bias") + (("running_mean", "running_var") if statistics else ()):
            self[f"{name}.norm.{entry}"] = (cout,)


def resnet_shapes(config: ModelConfig, prefix: str = "", statistics: bool = True) -> dict:
    """``build_resnet_deeplab_backbone`` (bottleneck ResNets) with ``config``'s widths."""
    shapes, w = _Shapes(), config.widths
    if config.stem == "deeplab":  # DeepLabStem: out_channels // 2, // 2, out_channels
        shapes.conv_norm(f"{prefix}stem.conv1", w[0], 3, 3, statistics)
        shapes.conv_norm(f"{prefix}stem.conv2", w[0], w[0], 3, statistics)
        shapes.conv_norm(f"{prefix}stem.conv3", 2 * w[0], w[0], 3, statistics)
        cin = 2 * w[0]
    else:
        shapes.conv_norm(f"{prefix}stem.conv1", w[0], 3, 7, statistics)
        cin = w[0]
    for stage, (width, count) in enumerate(zip(w, COUNTS[config.depth], strict=True), start=2):
        for block in range(count):
            name = f"{prefix}res{stage}.{block}"
            if block == 0:
                shapes.conv_norm(f"{name}.shortcut", 4 * width, cin, 1, statistics)
            shapes.conv_norm(
                f"{name}.conv1", width, cin if block == 0 else 4 * width, 1, statistics
            )
            shapes.conv_norm(f"{name}.conv2", width, width, 3, statistics)
            shapes.conv_norm(f"{name}.conv3", 4 * width, width, 1, statistics)
        cin = 4 * width
    return shapes


def decoder_shapes(config: ModelConfig, prefix: str) -> dict:
    """``DeepLabV3PlusHead(use_depthwise_separable_conv=True)`` decoder entries."""
    shapes, aspp, out = _Shapes(), config.aspp_channels, config.decoder_channels
    res2, res3, res5 = (4 * w for w in (config.widths[0], config.widths[1], config.widths[3]))
    low2, low3 = config.project_channels
    base = f"{prefix}decoder.res5.project_conv"
    shapes.conv_norm(f"{base}.convs.0", aspp, res5, 1)
    for i in (1, 2, 3):
        shapes.conv_norm(f"{base}.convs.{i}.depthwise", res5, 1, 3)
        shapes.conv_norm(f"{base}.convs.{i}.pointwise", aspp, res5, 1)
    shapes[f"{base}.convs.4.1.weight"], shapes[f"{base}.convs.4.1.bias"] = (
        (aspp, res5, 1, 1),
        (aspp,),
    )
    shapes.conv_norm(f"{base}.project", aspp, 5 * aspp, 1)
    for stage, low, cin, above in (("res3", low3, res3, aspp), ("res2", low2, res2, out)):
        shapes.conv_norm(f"{prefix}decoder.{stage}.project_conv", low, cin, 1)
        shapes.conv_norm(f"{prefix}decoder.{stage}.fuse_conv.depthwise", low + above, 1, 5)
        shapes.conv_norm(f"{prefix}decoder.{stage}.fuse_conv.pointwise", out, low + above, 1)
    return shapes


def semantic_shapes(config: ModelConfig) -> dict:
    """``PanopticAffinitySemSegHead`` / ``PanopticDeepLabSemSegHead``."""
    shapes = _Shapes(decoder_shapes(config, "sem_seg_head."))
    dec, head = config.decoder_channels, config.head_channels
    shapes.conv_norm("sem_seg_head.head.0", dec, dec, 3)
    shapes.conv_norm("sem_seg_head.head.1", head, dec, 3)
    shapes["sem_seg_head.predictor.weight"] = (config.num_classes, head, 1, 1)
    shapes["sem_seg_head.predictor.bias"] = (config.num_classes,)
    return shapes


def affinity_shapes(config: ModelConfig) -> dict:
    """``PanopticAffinityInsEmbedHead`` and ``PanopticAffinityAMWC``'s parameters."""
    shapes = _Shapes(decoder_shapes(config, "AFF_EMBED_head."))
    dec, head, k = config.decoder_channels, config.head_channels, config.num_classes
    shapes.conv_norm("AFF_EMBED_head.affinity_head.0", dec, dec + k, 3)
    shapes.conv_norm("AFF_EMBED_head.affinity_head.1", head, dec, 3)
    for c, d in enumerate(config.distances):
        f = 1 if d == 1 else 2  # groups
        name = f"AFF_EMBED_head.classifiers.{c}"
        shapes.conv_norm(f"{name}.0", f * (head // 4), head, 3)  # in per group: head
        shapes.conv_norm(f"{name}.1", f * (head // 8), head // 4, 3)
        shapes[f"{name}.2.weight"], shapes[f"{name}.2.bias"] = (2, f * (head // 8), 1, 1), (2,)
    shapes["amwc_layer.seg_cost_weights.0"] = shapes["amwc_layer.seg_cost_weights.1"] = (1,)
    for i in range(2 * len(config.distances)):
        shapes[f"amwc_layer.edge_costs_weights.{i}"] = (1,)
    shapes["amwc_layer.training_per_class_areas"] = (k,)
    return shapes


def random_state(shapes: dict, seed: int = 0) -> dict[str, torch.Tensor]:
    """Distinct random values for every entry (variances positive)."""
    g = torch.Generator().manual_seed(seed)
    draw = {
        True: lambda s: torch.rand(s, generator=g) + 0.5,
        False: lambda s: torch.randn(s, generator=g),
    }
    return {k: draw[k.endswith("running_var")](s) for k, s in shapes.items()}


_CAFFE2_STEM = {
    "stem.conv1.weight": "conv1_w",
    "stem.conv1.norm.weight": "res_conv1_bn_s",
    "stem.conv1.norm.bias": "res_conv1_bn_b",
}


def caffe2_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """A detectron2-named ResNet state as the MSRA Caffe2 file names it (scale and shift only,
    ``fc1000`` and ``_momentum`` blobs as in the published files)."""
    out = {}
    for key, value in state.items():
        if key.endswith(("running_mean", "running_var")):
            continue
        name = _CAFFE2_STEM.get(key)
        if name is None:
            name = key
            for d2, c2 in (("conv1", "branch2a"), ("conv2", "branch2b"), ("conv3", "branch2c"),
                           ("shortcut", "branch1")):  # fmt: skip
                name = name.replace(f".{d2}.", f".{c2}.")
            name = name.replace(".norm.weight", "_bn_s").replace(".norm.bias", "_bn_b")
            name = name.replace(".weight", "_w").replace(".", "_")
        out[name] = value.numpy()
        out[name + "_momentum"] = value.numpy() * 0
    out["fc1000_w"], out["fc1000_b"] = torch.zeros(10, 8).numpy(), torch.zeros(10).numpy()
    return out
