"""Published weights into :class:`~gpucops.model.COPSNet` (and the AMWC layer's cost scalars) by
an explicit key map.

Readable files (:func:`read_weights`): ``.pkl`` through
:func:`~gpucops.model.safe_pickle.load_pickle` (numpy arrays only), anything else through
``torch.load(weights_only=True)``; a ``{"model": …}``, ``{"state_dict": …}``, ``{"blobs": …}``
(Caffe2) or gpucops ``{"module": …}`` wrapper is unwrapped.

Layouts (:func:`weight_format`) and what each carries:

==================== ================================================ ==========================
format               recognised by                                    parts
==================== ================================================ ==========================
``gpucops``          ``net.*`` / ``layer.*`` (a training checkpoint   the parts present
                     or a ``gpucops convert`` output)
``torchvision``      ``conv1.weight``, ``layer1.0.*`` (``fc.*``       backbone (torchvision stem)
                     skipped)
``caffe2``           ``conv1_w``, ``res2_0_branch2a_w`` (detectron2's backbone
                     ``ImageNetPretrained/MSRA/R-50.pkl``, R-101)
``detectron2``       ``stem.conv1.weight``, ``res2.0.conv1.weight``   backbone
                     (``DeepLab/R-52.pkl``; ``backbone.`` optional)
``panoptic-deeplab`` ``sem_seg_head.*``, ``ins_embed_head.*``         backbone, semantic branch
                     (detectron2's Panoptic-DeepLab; its centre/
                     offset head has no counterpart and is skipped)
``cops``             ``AFF_EMBED_head.*``, ``amwc_layer.*`` (the      everything
                     official COPS checkpoints)
==================== ================================================ ==========================

The key map (detectron2 names, from ``detectron2/modeling/backbone/resnet.py``,
``projects/DeepLab/deeplab/{resnet,semantic_seg}.py``, ``detectron2/layers/aspp.py`` and the
official COPS ``panoptic_affinity/panoptic_seg_affinity.py``; ``{p}`` is a batch-norm entry
``weight|bias|running_mean|running_var|num_batches_tracked``):

- ``stem.conv1.weight`` → ``conv1.weight`` (torchvision stem) or ``stem.0.weight`` (DeepLab
  stem; ``stem.conv2`` → ``stem.3``, ``stem.conv3`` → ``stem.6``); ``stem.convN.norm.{p}`` →
  ``bn1.{p}`` / ``stem.{1,4,7}.{p}``
- ``res{s}.{b}.conv{n}.weight`` → ``layer{s-1}.{b}.conv{n}.weight``, ``….conv{n}.norm.{p}`` →
  ``….bn{n}.{p}``, ``….shortcut.weight`` → ``….downsample.0.weight``, ``….shortcut.norm.{p}`` →
  ``….downsample.1.{p}``
- decoders (``sem_seg_head.`` → ``semantic_decoder.``, ``AFF_EMBED_head.`` →
  ``affinity_decoder.``): ``decoder.res5.project_conv.convs.0.{weight,norm.{p}}`` →
  ``aspp.0.{0.weight,1.{p}}``; ``….convs.{i}.depthwise|pointwise`` (i = 1–3) →
  ``aspp.{i}.0|1``; ``….convs.4.1.{weight,bias}`` → ``pool.0.{weight,bias}``;
  ``….project`` → ``aspp_project.0``; ``decoder.res{3,2}.project_conv`` → ``project{3,2}``;
  ``decoder.res{3,2}.fuse_conv.depthwise|pointwise`` → ``fuse{3,2}.0|1`` (needs
  ``decoder_fuse: separable5x5``; detectron2 concatenates [skip, upsampled], gpucops
  [upsampled, skip], so the fusion's input channels are reordered)
- ``sem_seg_head.head.{i}`` → ``semantic_head.{i}``, ``sem_seg_head.predictor`` →
  ``semantic_predictor``; ``AFF_EMBED_head.affinity_head.{i}`` → ``affinity_head.{i}``,
  ``AFF_EMBED_head.classifiers.{c}.{0,1}`` → ``classifiers.{c}.body.{0,1}``,
  ``….classifiers.{c}.2`` → ``classifiers.{c}.last``
- ``amwc_layer.seg_cost_weights.{0,1}`` → ``layer.node_scale``, ``layer.node_bias``;
  ``amwc_layer.edge_costs_weights.{2i,2i+1}`` → ``layer.edge_scales[i]``, ``layer.edge_biases[i]``
- skipped: ``pixel_mean``/``pixel_std`` (checked against the model's), ``fc.*``, ``fc1000_*``,
  ``ins_embed_head.*``, ``amwc_layer.training_per_class_areas`` (set from the config)

Caffe2 (MSRA) files also differ in what the numbers mean, which the import converts: their
first convolution reads BGR pixels minus the mean, unscaled (detectron2's PIXEL_STD 1), so its
input channels are reversed and multiplied by the model's ``pixel_std``; their batch norms have
only scale and shift (frozen), so the statistics become mean 0 and variance 1 − ε. They were
trained with the stride in the 1×1 convolution (``stride_in_1x1: true`` matches them).

Every tensor the format carries for the model must land with its shape, and every key in the
file must be known: otherwise :class:`ValueError` lists the keys.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .cops_net import COPSNet
from .safe_pickle import load_pickle

__all__ = ["ImportReport", "load_pretrained", "map_weights", "read_weights", "weight_format"]

PARTS = (
    "net.backbone", "net.semantic_decoder", "net.semantic_head", "net.semantic_predictor",
    "net.affinity_decoder", "net.affinity_head", "net.classifiers", "layer",
)  # fmt: skip
_CARRIED = {
    "torchvision": ("net.backbone",),
    "caffe2": ("net.backbone",),
    "detectron2": ("net.backbone",),
    "panoptic-deeplab": PARTS[:4],
    "cops": PARTS,
}
_NORM = r"(?P<p>weight|bias|running_mean|running_var|num_batches_tracked)"


def _rules(pairs: list[tuple[str, str]]) -> list[tuple[re.Pattern, str]]:
    return [(re.compile(pattern), template) for pattern, template in pairs]


# detectron2 ResNet names → gpucops ResNet names (below the backbone)
_BLOCK, _LAYER = r"res(?P<s>[2-5])\.(?P<b>\d+)\.", r"layer{s-1}.\g<b>."
_RESNET = _rules([
    (_BLOCK + rf"conv(?P<n>[123])\.norm\.{_NORM}", _LAYER + r"bn\g<n>.\g<p>"),
    (_BLOCK + r"conv(?P<n>[123])\.weight", _LAYER + r"conv\g<n>.weight"),
    (_BLOCK + rf"shortcut\.norm\.{_NORM}", _LAYER + r"downsample.1.\g<p>"),
    (_BLOCK + r"shortcut\.weight", _LAYER + r"downsample.0.weight"),
])  # fmt: skip
_STEM = {
    "torchvision": _rules([
        (r"stem\.conv1\.weight", "conv1.weight"), (rf"stem\.conv1\.norm\.{_NORM}", r"bn1.\g<p>"),
    ]),
    "deeplab": _rules([
        (r"stem\.conv(?P<n>[123])\.weight", r"stem.{3n-3}.weight"),
        (rf"stem\.conv(?P<n>[123])\.norm\.{_NORM}", r"stem.{3n-2}.\g<p>"),
    ]),
}  # fmt: skip


def _conv_norm(source: str, target: str) -> list[tuple[str, str]]:
    """detectron2's ``Conv2d(…, norm=BN)`` at ``source`` (``weight``, ``norm.*``) → gpucops'
    (convolution, batch norm, ReLU) at ``target`` (``0.weight``, ``1.*``)."""
    return [
        (source + r"weight", target + "0.weight"),
        (source + rf"norm\.{_NORM}", target + r"1.\g<p>"),
    ]


_ASPP = r"decoder\.res5\.project_conv\."
_ATROUS, _SKIP = _ASPP + r"convs\.(?P<i>[123])\.", r"decoder\.res(?P<s>[23])\."
_DECODER = _rules([
    *_conv_norm(_ASPP + r"convs\.0\.", "aspp.0."),
    *_conv_norm(_ATROUS + r"depthwise\.", r"aspp.\g<i>.0."),
    *_conv_norm(_ATROUS + r"pointwise\.", r"aspp.\g<i>.1."),
    (_ASPP + r"convs\.4\.1\.(?P<p>weight|bias)", r"pool.0.\g<p>"),
    *_conv_norm(_ASPP + r"project\.", "aspp_project.0."),
    *_conv_norm(_SKIP + r"project_conv\.", r"project\g<s>."),
    *_conv_norm(_SKIP + r"fuse_conv\.depthwise\.", r"fuse\g<s>.0."),
    *_conv_norm(_SKIP + r"fuse_conv\.pointwise\.", r"fuse\g<s>.1."),
])  # fmt: skip
_CONV_NORM = _conv_norm(r"(?P<i>\d+)\.", r"\g<i>.")
_HEADS = {
    "sem_seg_head.": ("net.semantic_decoder.", _DECODER),
    "sem_seg_head.head.": ("net.semantic_head.", _rules(_CONV_NORM)),
    "sem_seg_head.predictor.": ("net.semantic_predictor.", _rules([(r"(weight|bias)", r"\1")])),
    "AFF_EMBED_head.": ("net.affinity_decoder.", _DECODER),
    "AFF_EMBED_head.affinity_head.": ("net.affinity_head.", _rules(_CONV_NORM)),
    "AFF_EMBED_head.classifiers.": ("net.classifiers.", _rules([
        *_conv_norm(r"(?P<c>\d+)\.(?P<i>[01])\.", r"\g<c>.body.\g<i>."),
        (r"(?P<c>\d+)\.2\.(?P<p>weight|bias)", r"\g<c>.last.\g<p>"),
    ])),
}  # fmt: skip
_SKIPPED = re.compile(
    r"(pixel_mean|pixel_std|fc\..*|fc1000_.*|ins_embed_head\..*|"
    r"amwc_layer\.training_per_class_areas)"
)
_COST_SCALARS = re.compile(r"amwc_layer\.(seg_cost_weights\.[01]|edge_costs_weights\.\d+)")
# Caffe2 (MSRA) backbone names → detectron2's (detectron2/checkpoint/c2_model_loading.py)
_CAFFE2 = _rules([
    (r"conv1_w", "stem.conv1.weight"),
    (r"res_conv1_bn_s", "stem.conv1.norm.weight"), (r"res_conv1_bn_b", "stem.conv1.norm.bias"),
    (r"res(?P<s>\d)_(?P<b>\d+)_branch1_w", r"res\g<s>.\g<b>.shortcut.weight"),
    (r"res(?P<s>\d)_(?P<b>\d+)_branch1_bn_s", r"res\g<s>.\g<b>.shortcut.norm.weight"),
    (r"res(?P<s>\d)_(?P<b>\d+)_branch1_bn_b", r"res\g<s>.\g<b>.shortcut.norm.bias"),
    (r"res(?P<s>\d)_(?P<b>\d+)_branch2a_w", r"res\g<s>.\g<b>.conv1.weight"),
    (r"res(?P<s>\d)_(?P<b>\d+)_branch2b_w", r"res\g<s>.\g<b>.conv2.weight"),
    (r"res(?P<s>\d)_(?P<b>\d+)_branch2c_w", r"res\g<s>.\g<b>.conv3.weight"),
    (r"res(?P<s>\d)_(?P<b>\d+)_branch2(?P<n>[abc])_bn_s", r"res\g<s>.\g<b>.conv{n}.norm.weight"),
    (r"res(?P<s>\d)_(?P<b>\d+)_branch2(?P<n>[abc])_bn_b", r"res\g<s>.\g<b>.conv{n}.norm.bias"),
])  # fmt: skip


def _apply(rules: list[tuple[re.Pattern, str]], key: str) -> str | None:
    """``key`` renamed by the first rule that matches it whole, or None. ``{s-1}``, ``{3n-3}``,
    ``{3n-2}`` and ``{n}`` (a, b, c → 1, 2, 3) in a template are computed from the groups."""
    for pattern, template in rules:
        match = pattern.fullmatch(key)
        if match is None:
            continue
        groups = match.groupdict()
        n = groups.get("n")
        number = int({"a": "1", "b": "2", "c": "3"}.get(n, n)) if n else 0
        computed = template.replace("{n}", str(number))
        if "s" in groups:
            computed = computed.replace("{s-1}", str(int(groups["s"]) - 1))
        computed = computed.replace("{3n-3}", str(3 * number - 3))
        computed = computed.replace("{3n-2}", str(3 * number - 2))
        return match.expand(computed)
    return None


def _plain(value: object, key: str, path: Path) -> torch.Tensor:
    if torch.is_tensor(value):
        return value
    import numpy as np

    if isinstance(value, np.ndarray) and value.dtype.kind in "biuf":
        return torch.from_numpy(np.array(value))  # a copy: the file's arrays may be read-only
    raise ValueError(f"weights {path}: {key} is a {type(value).__name__}, not a numeric array")


def read_weights(path: str | Path) -> dict[str, torch.Tensor]:
    """The flat ``name → tensor`` dict stored in ``path`` (see the module docstring), read
    without running code from the file; ``_momentum`` blobs of Caffe2 files are dropped.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: one line naming the file when it cannot be read safely or holds no weights.
    """
    path = Path(path)
    if path.suffix == ".pkl":
        state = load_pickle(path)
    else:
        from ..checkpoint import load_checkpoint

        state = load_checkpoint(path)
    for wrapper in ("module", "model", "state_dict", "blobs"):
        if isinstance(state, dict) and isinstance(state.get(wrapper), dict):
            state = state[wrapper]
            break
    if not isinstance(state, dict) or not state:
        raise ValueError(f"weights {path} hold no name → tensor mapping")
    return {
        str(k): _plain(v, k, path) for k, v in state.items() if not str(k).endswith("_momentum")
    }


def weight_format(state: dict[str, torch.Tensor]) -> str | None:
    """The layout of a flat state dict (the module docstring's table), or None if unknown."""
    keys = set(state)
    if any(k.startswith(("net.", "layer.")) for k in keys):
        return "gpucops"
    if any(k.startswith(("AFF_EMBED_head.", "amwc_layer.")) for k in keys):
        return "cops"
    if any(k.startswith(("sem_seg_head.", "ins_embed_head.")) for k in keys):
        return "panoptic-deeplab"
    if "conv1_w" in keys or any(re.fullmatch(r"res\d_\d+_branch.*", k) for k in keys):
        return "caffe2"
    if {"stem.conv1.weight", "backbone.stem.conv1.weight"} & keys:
        return "detectron2"
    if "conv1.weight" in keys and any(k.startswith("layer1.") for k in keys):
        return "torchvision"
    return None


def _detectron2_stem(keys: set[str]) -> str:
    deeplab = {"stem.conv2.weight", "backbone.stem.conv2.weight"} & keys
    return "deeplab" if deeplab else "torchvision"


def _rename(key: str, fmt: str, stem: str) -> str | None:
    """The gpucops name (``net.…``/``layer.…``) of a file's key, or None if the map has none."""
    if fmt == "gpucops":
        return key
    if fmt == "torchvision":
        return f"net.backbone.{key}"
    if fmt == "caffe2":
        key = _apply(_CAFFE2, key) or key
    key = key.removeprefix("backbone.")
    own = _apply(_STEM[stem], key) or _apply(_RESNET, key)
    if own is not None:
        return f"net.backbone.{own}"
    for prefix in sorted(_HEADS, key=len, reverse=True):  # the longest prefix first
        if key.startswith(prefix):
            target, rules = _HEADS[prefix]
            own = _apply(rules, key.removeprefix(prefix))
            return None if own is None else target + own
    return None


def _layer_scalars(state: dict[str, torch.Tensor], distances: int) -> dict[str, torch.Tensor]:
    """The official AMWC layer's cost scalars (one-element parameters) as gpucops' tensors."""
    scalars = {}
    for index, name in enumerate(("layer.node_scale", "layer.node_bias")):
        value = state.get(f"amwc_layer.seg_cost_weights.{index}")
        if value is not None:
            scalars[name] = value.reshape(())
    edge = [state.get(f"amwc_layer.edge_costs_weights.{i}") for i in range(2 * distances)]
    if all(v is not None for v in edge):
        scalars["layer.edge_scales"] = torch.cat([v.reshape(1) for v in edge[0::2]])
        scalars["layer.edge_biases"] = torch.cat([v.reshape(1) for v in edge[1::2]])
    return scalars


def _skip_first(tensor: torch.Tensor, skip: int, dim: int) -> torch.Tensor:
    """Channels ``[skip:]`` then ``[:skip]`` along ``dim``: detectron2's fusion input is
    [skip connection, upsampled], gpucops' [upsampled, skip connection]."""
    order = torch.cat([torch.arange(skip, tensor.shape[dim]), torch.arange(skip)])
    return tensor.index_select(dim, order)


def _convert_values(
    mapped: dict[str, torch.Tensor], fmt: str, net: COPSNet
) -> dict[str, torch.Tensor]:
    """What the numbers of ``mapped`` mean in gpucops' modules (the module docstring)."""
    out = dict(mapped)
    if fmt in ("panoptic-deeplab", "cops"):
        low = dict(zip(("2", "3"), net.config.project_channels, strict=True))
        for key, value in mapped.items():
            found = re.fullmatch(r"net\.\w+_decoder\.fuse([23])\.(0\.[01]|1\.0)\.(\w+)", key)
            if found and not (found.group(2) == "0.1" and found.group(3) == "num_batches_tracked"):
                dim = 1 if found.group(2) == "1.0" else 0
                out[key] = _skip_first(value, low[found.group(1)], dim)
    if fmt == "caffe2":
        for key, value in mapped.items():  # every backbone bias is a batch norm's
            if key.endswith(".bias"):
                stats = key.removesuffix("bias")
                eps = 1e-5  # nn.BatchNorm2d's: (x − 0) / sqrt(1 − ε + ε) · scale = x · scale
                out.setdefault(stats + "running_mean", torch.zeros_like(value))
                out.setdefault(stats + "running_var", torch.full_like(value, 1 - eps))
        first = "net.backbone.conv1.weight"
        if first in out:  # BGR, mean-subtracted 0–255 input → RGB normalised by pixel_std
            std = torch.tensor(net.config.pixel_std, dtype=out[first].dtype).view(1, 3, 1, 1)
            out[first] = out[first].flip(1) * std
    return out


@dataclass(frozen=True)
class ImportReport:
    """What :func:`map_weights` did.

    Attributes:
        source: the file (or ``"<state dict>"``); format: its layout (:func:`weight_format`).
        loaded: the number of tensors that landed.
        initial: the model's parts the format does not carry (left at initialisation).
        skipped: the file's keys the map knows but the model does not use (classifiers,
            Panoptic-DeepLab's centre/offset head, parts outside the requested ones).
        notes: what the user must know about the converted numbers.
    """

    source: str
    format: str
    loaded: int
    initial: tuple[str, ...]
    skipped: tuple[str, ...]
    notes: tuple[str, ...]

    def summary(self) -> str:
        """A few lines for the terminal."""
        lines = [f"{self.source}: {self.format} weights, {self.loaded} tensors loaded"]
        if self.initial:
            lines.append("left at initialisation: " + ", ".join(self.initial))
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} keys: {_listing(self.skipped)}")
        return "\n".join(lines + [f"note: {n}" for n in self.notes])


def _listing(keys, most: int = 8) -> str:
    keys = sorted(keys)
    return ", ".join(keys[:most]) + (f" … ({len(keys)} in all)" if len(keys) > most else "")


def _targets(net: COPSNet, layer: nn.Module | None) -> dict[str, torch.Tensor]:
    state = {f"net.{k}": v for k, v in net.state_dict().items()}
    if layer is not None:
        state.update({f"layer.{k}": v for k, v in layer.state_dict().items()})
    return state


def _check_stem(fmt: str, keys: set[str], net: COPSNet, source: str) -> None:
    if fmt == "torchvision" and net.config.stem != "torchvision":
        raise ValueError(
            f"{source} holds torchvision ResNet weights, which fit the torchvision stem only "
            f"(the model's stem is {net.config.stem!r}: set stem: torchvision)"
        )
    if fmt in ("caffe2", "detectron2", "panoptic-deeplab", "cops"):
        stem = _detectron2_stem(keys)
        if stem != net.config.stem:
            raise ValueError(
                f"{source} has the {stem} stem but the model's stem is {net.config.stem!r}: "
                f"set stem: {stem}"
            )
    if fmt in ("panoptic-deeplab", "cops") and net.config.decoder_fuse != "separable5x5":
        raise ValueError(
            f"{source}: its decoders fuse with one depthwise-separable 5×5 convolution but the "
            f"model's decoder_fuse is {net.config.decoder_fuse!r}: set decoder_fuse: separable5x5"
        )


def _check_pixels(state: dict[str, torch.Tensor], net: COPSNet, source: str) -> None:
    """A full detectron2 checkpoint states its input normalisation; a different one would
    feed the weights other numbers than they were trained on."""
    for name in ("pixel_mean", "pixel_std"):
        if name in state:
            theirs = state[name].flatten().double()
            ours = torch.tensor(getattr(net.config, name), dtype=torch.float64)
            if theirs.shape != ours.shape or not torch.allclose(theirs, ours, atol=1e-3):
                raise ValueError(
                    f"{source}: {name} {theirs.tolist()} differs from the model's {ours.tolist()}"
                )


def map_weights(
    state: dict[str, torch.Tensor],
    net: COPSNet,
    layer: nn.Module | None = None,
    parts: tuple[str, ...] = PARTS,
    source: str = "<state dict>",
) -> tuple[dict[str, torch.Tensor], ImportReport]:
    """The file's tensors under gpucops names (``net.…``, ``layer.…``) for the ``parts`` of
    ``net`` (and ``layer``, the AMWC layer) and the report. Pure: neither ``state`` nor the
    modules change.

    Raises:
        ValueError: one line naming ``source`` for an unknown layout, a different stem or
            input normalisation, keys the map does not know, tensors of the carried parts that
            the file lacks, or shapes that differ — each listing the keys.
    """
    fmt = weight_format(state)
    if fmt is None:
        raise ValueError(f"{source}: unknown weight layout (keys {_listing(state, 5)})")
    _check_stem(fmt, set(state), net, source)
    _check_pixels(state, net, source)
    stem = _detectron2_stem(set(state)) if fmt != "gpucops" else net.config.stem
    targets = _targets(net, layer)
    distances = len(layer.edge_scales) if layer is not None else len(net.config.distances)
    mapped, unknown, skipped = {}, [], []
    if fmt == "cops" and layer is not None:
        mapped.update(_layer_scalars(state, distances))
    for key, value in state.items():
        if fmt == "cops" and key.startswith("amwc_layer.") and _SKIPPED.fullmatch(key) is None:
            known = _COST_SCALARS.fullmatch(key)
            if known is None:
                unknown.append(key)
            elif layer is None:
                skipped.append(key)
            continue
        if fmt != "gpucops" and _SKIPPED.fullmatch(key):
            skipped.append(key)
            continue
        name = _rename(key, fmt, stem)
        if name is None:
            unknown.append(key)
        elif not name.startswith(("net.", "layer.")) or (layer is None and name[:6] == "layer."):
            # the trainer's own entries (area thresholds: from the config), or cost scalars
            # without a layer to take them
            skipped.append(key)
        else:
            mapped[name] = value
    outside = [k for k in mapped if k not in targets]
    if unknown or outside:
        raise ValueError(
            f"{source}: keys the {fmt} key map does not know or the model does not have: "
            f"{_listing(unknown + outside)}"
        )
    mapped = _convert_values(mapped, fmt, net)
    carried = _carried(fmt, mapped)
    wanted = {k for k in targets if k.startswith(tuple(p + "." for p in parts))}
    for key in [k for k in mapped if k not in wanted]:
        skipped.append(key)
        del mapped[key]
    # not in every file: a counter, and the thing classes (the dataset's, not weights)
    optional = (".num_batches_tracked", "layer.partitionable")
    missing = [
        k for k in wanted
        if k not in mapped and k.startswith(tuple(p + "." for p in carried))
        and not k.endswith(optional)
    ]  # fmt: skip
    if missing:
        raise ValueError(
            f"{source}: the {fmt} weights lack tensors of the model (another depth, stem or "
            f"size?): {_listing(missing)}"
        )
    wrong = [
        f"{k} {tuple(v.shape)} vs the model's {tuple(targets[k].shape)}"
        for k, v in mapped.items() if v.shape != targets[k].shape
    ]  # fmt: skip
    if wrong:
        raise ValueError(f"{source}: shapes differ from the model's: {_listing(wrong, 4)}")
    initial = tuple(p for p in parts if p not in carried and (layer is not None or p != "layer"))
    notes = ()
    if fmt == "caffe2" and not net.config.stride_in_1x1:
        notes = ("MSRA weights were trained with the stride in the 1×1 convolution; this model "
                 "strides in the 3×3 one (stride_in_1x1: true matches them)",)  # fmt: skip
    report = ImportReport(source, fmt, len(mapped), initial, tuple(skipped), notes)
    return mapped, report


def _carried(fmt: str, mapped: dict[str, torch.Tensor]) -> tuple[str, ...]:
    if fmt == "gpucops":
        return tuple(p for p in PARTS if any(k.startswith(p + ".") for k in mapped))
    return _CARRIED[fmt]


def load_pretrained(
    net: COPSNet,
    path: str | Path,
    layer: nn.Module | None = None,
    parts: tuple[str, ...] = PARTS,
    log: Callable[[str], None] | None = None,
) -> ImportReport:
    """Load the weights in ``path`` (any layout of the module docstring) into the ``parts`` of
    ``net`` (and the cost scalars of ``layer``); ``log`` receives the report's summary.

    Raises:
        FileNotFoundError, ValueError: see :func:`read_weights` and :func:`map_weights`.
    """
    mapped, report = map_weights(read_weights(path), net, layer, parts, str(path))
    for prefix, module in (("net.", net), ("layer.", layer)):
        own = {k.removeprefix(prefix): v for k, v in mapped.items() if k.startswith(prefix)}
        if own:
            module.load_state_dict(own, strict=False)  # completeness: checked by map_weights
    if log is not None:
        log(report.summary())
    return report
