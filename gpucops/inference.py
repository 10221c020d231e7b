"""From network outputs to panoptic labelings: the full-resolution problem, labels back at image
size, and :class:`Predictor`, a trained model loaded from a ``train/train.py`` checkpoint.

COPS solves on the network's stride-4 grid and upsamples the labels ×4 (nearest). At full
resolution (the supplementary's Table 8) the costs are upsampled instead and the AMWC is solved
on the image's own pixel grid: node costs bilinearly ×4; the affinity map of distance d becomes
the map of distance 4d (the same image distance), resampled so that each full-resolution edge
takes the value at its centre; and the stride-4 map of distance 1 also gives the full-resolution
distance-1 edges — without them the pixels of a 4×4 block would share no short edge and the grid
would fall apart into 16 interleaved sub-grids (distances 4, 16, … only join pixels whose
coordinates agree mod 4).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from .grid import edge_offsets
from .labeling import PanopticLabeling
from .solve import TILE, solve
from .timing import synchronize

__all__ = [
    "Prediction",
    "Predictor",
    "full_resolution_costs",
    "full_resolution_distances",
    "remove_small_segments",
    "upsample_labels",
]


def full_resolution_distances(distances: tuple[int, ...], factor: int = 4) -> tuple[int, ...]:
    """The full-resolution distances of stride-``factor`` ``distances``: 1 and ``factor · d``."""
    return tuple(sorted({1, *(factor * d for d in distances)}))


def _centre_shift(distance: int) -> float:
    """Where the centre of an edge lies relative to the position that stores it (grid layout)."""
    before, after = edge_offsets(distance)
    return (after - before) / 2


def _resample(
    values: torch.Tensor, positions: torch.Tensor, dim: int, first: int = 0, last: int = -1
) -> torch.Tensor:
    """Linear interpolation of ``values`` along ``dim`` at fractional ``positions``, clamped to
    the stored range ``[first, last]`` (an edge map holds no edge outside it)."""
    last = values.shape[dim] - 1 if last < 0 else last
    positions = positions.clamp(first, last)
    low = positions.floor().long()
    high = (low + 1).clamp(max=last)
    shape = [1] * values.dim()
    shape[dim] = -1
    weight = (positions - low).view(shape).to(values.dtype)
    return values.index_select(dim, low) * (1 - weight) + values.index_select(dim, high) * weight


def full_resolution_costs(
    node_costs: torch.Tensor,
    edge_costs: torch.Tensor,
    distances: tuple[int, ...],
    size: tuple[int, int],
    factor: int = 4,
) -> tuple[torch.Tensor, torch.Tensor, tuple[int, ...]]:
    """The full-resolution problem of stride-``factor`` costs (see the module docstring).

    Args:
        node_costs: ``[B, K, h, w]`` on the stride grid (grid cell i covers pixels
            ``factor·i … factor·i + factor − 1``).
        edge_costs: ``[B, 2·|D|, h, w]`` for ``distances`` (starting with 1), COPS layout.
        size: the image's ``(H, W)``, at most ``(factor·h, factor·w)``.
    Returns:
        ``node_costs [B, K, H, W]``, ``edge_costs [B, 2·|D'|, H, W]`` and D' =
        :func:`full_resolution_distances`.

    Solve it with ``tile=factor`` (as :class:`Predictor`, ``gpucops demo`` and ``gpucops bench``
    do): the solver's greedy pre-pass then merges each stride cell's pixels over their
    distance-1 edges. The default tile 16 also takes the distance-4 edges, which come from the
    same stride map as the distance-1 ones; on the demo's upsampled costs it kept 97.6–99.3 % of
    the sequential greedy's objective improvement, tile 4 99.5–99.95 %
    (benchmarks/RESULTS.md).
    """
    height, width = size
    small_h, small_w = node_costs.shape[-2:]
    if not (0 < height <= factor * small_h and 0 < width <= factor * small_w):
        raise ValueError(
            f"size {tuple(size)} must be positive and within ×{factor} of the "
            f"{small_h}×{small_w} grid"
        )
    if not distances or distances[0] != 1:
        raise ValueError(f"distances must start with 1, got {distances}")
    nodes = F.interpolate(node_costs, scale_factor=factor, mode="bilinear", align_corners=False)
    nodes = nodes[..., :height, :width]
    full = full_resolution_distances(distances, factor)
    # full-resolution pixel p ↔ stride-grid coordinate (p − (factor − 1)/2) / factor
    rows = torch.arange(height, dtype=torch.float64, device=node_costs.device)
    cols = torch.arange(width, dtype=torch.float64, device=node_costs.device)
    centre = (factor - 1) / 2
    across = [(cols - centre) / factor, (rows - centre) / factor]
    maps = []
    for distance in full:
        source = 1 if distance == 1 else distance // factor
        index = distances.index(source)
        shift = (_centre_shift(distance) - centre) / factor - _centre_shift(source)
        before, after = edge_offsets(source)
        for axis, along, other in ((0, rows, across[0]), (1, cols, across[1])):
            values = edge_costs[:, 2 * index + axis]
            # along the edge's axis: the value at the edge's centre, from stored edges only;
            # across it: the pixel's
            last = values.shape[1 + axis] - 1 - after
            if last < before:  # the stride grid has no edge of this distance on this axis
                maps.append(values.new_zeros(values.shape[0], height, width))
                continue
            values = _resample(values, along / factor + shift, 1 + axis, before, last)
            maps.append(_resample(values, other, dim=2 - axis))
    return nodes.contiguous(), torch.stack(maps, 1), full


def upsample_labels(labels: torch.Tensor, size: tuple[int, int], factor: int = 4) -> torch.Tensor:
    """Labels ``[..., h, w]`` on the stride grid → ``[..., H, W]`` (nearest: each grid cell
    fills its ``factor × factor`` block), cropped to ``size``."""
    height, width = size
    if height > factor * labels.shape[-2] or width > factor * labels.shape[-1]:
        raise ValueError(f"size {tuple(size)} exceeds ×{factor} of {tuple(labels.shape[-2:])}")
    upsampled = labels.repeat_interleave(factor, -2).repeat_interleave(factor, -1)
    return upsampled[..., :height, :width]


def remove_small_segments(
    classes: torch.Tensor,
    segments: torch.Tensor,
    partitionable: torch.Tensor,
    thing_area: float = 200,
    stuff_area: float = 2048,
) -> torch.Tensor:
    """COPS' inference post-processing: segments smaller than their kind's area (pixels of
    ``segments``' grid; official Cityscapes values at full resolution: things 200, stuff 2048,
    COCO stuff 4096) become void.

    Args:
        classes, segments: ``[B, H, W]`` int64 labeling (segment −1 = void already).
        partitionable: ``[K]`` bool.
    Returns:
        ``segments [B, H, W]`` with the small ones set to −1.
    """
    if classes.shape != segments.shape or classes.dim() != 3:
        raise ValueError(f"classes and segments must be [B, H, W], got {tuple(classes.shape)}")
    if segments.numel() == 0:
        return segments.clone()
    batch = segments.shape[0]
    count = int(segments.max()) + 2  # id −1 → slot 0
    keys = torch.arange(batch, device=segments.device).view(-1, 1, 1) * count + segments + 1
    areas = torch.bincount(keys.flatten(), minlength=batch * count)
    segment_class = torch.zeros(batch * count, dtype=torch.int64, device=segments.device)
    segment_class[keys.flatten()] = classes.flatten().clamp(min=0)
    thing = partitionable.to(segments.device)[segment_class]
    small = areas < torch.where(thing, float(thing_area), float(stuff_area))
    return torch.where(small[keys], -1, segments)


@dataclass
class Prediction:
    """Panoptic predictions of a batch at image size.

    Attributes:
        labeling: the solver's result (``classes``/``segments`` ``[B, H, W]``), image size.
        semantic_logits: ``[B, K, h, w]`` and ``affinity_logits`` ``[B, 2·|D|, h, w]``: the
            network's outputs on the stride-4 grid (for the instance scores).
        seconds: ``{"model", "solver"}`` wall times (device synchronised).
    """

    labeling: PanopticLabeling
    semantic_logits: torch.Tensor
    affinity_logits: torch.Tensor
    seconds: dict


class Predictor:
    """A trained COPS network and its AMWC layer, loaded from a ``train/train.py`` checkpoint.

    Args:
        checkpoint: path of ``checkpoint.pt``.
        device: ``"cpu"``, ``"cuda"``, … (the solver runs on the same device).
        categories: the dataset's categories (``id``, ``name``, ``isthing``; a COCO-panoptic JSON's
            ``categories``) in class order; default: those stored in the checkpoint.
    """

    STRIDE = 4
    PAD = 32  # inputs are padded to a multiple of the backbone's largest stride

    def __init__(
        self,
        checkpoint: str | Path,
        device: str | torch.device = "cpu",
        categories: list[dict] | None = None,
    ):
        from .trainer import TrainConfig, TrainingModule, load_checkpoint

        state = load_checkpoint(checkpoint)
        if not isinstance(state, dict) or not {"module", "config"} <= set(state):
            raise ValueError(f"checkpoint {checkpoint} is not a gpucops training checkpoint")
        try:
            config = TrainConfig(**state["config"])
        except TypeError as error:  # written by another version of gpucops
            raise ValueError(f"checkpoint {checkpoint} has an unknown config: {error}") from None
        partitionable = state["module"].get("layer.partitionable")
        if partitionable is None:
            raise ValueError(f"checkpoint {checkpoint} has no layer.partitionable")
        self.module = TrainingModule(config, partitionable)
        try:
            self.module.load_state_dict(state["module"])
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0]
            raise ValueError(f"checkpoint {checkpoint} does not fit its config: {first}") from None
        self.module.to(device).eval()
        self.device = torch.device(device)
        self.config = config
        self.partitionable = partitionable.bool()
        categories = categories if categories is not None else state.get("categories")
        if categories is None:
            categories = [
                {"id": k, "name": f"class {k}", "isthing": int(t)}
                for k, t in enumerate(self.partitionable.tolist())
            ]
        if len(categories) != len(self.partitionable):
            raise ValueError(
                f"the checkpoint has {len(self.partitionable)} classes but the categories "
                f"list {len(categories)}"
            )
        things = [bool(c["isthing"]) for c in categories]
        if things != self.partitionable.tolist():
            raise ValueError("the categories' isthing flags differ from the checkpoint's classes")
        self.categories = categories

    @property
    def distances(self) -> tuple[int, ...]:
        return tuple(self.config.distances)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, full_resolution: bool = False) -> Prediction:
        """Predict ``images [B, 3, H, W]`` uint8 RGB: the AMWC on the stride-4 grid with labels
        upsampled ×4, or with ``full_resolution`` on the image's own grid."""
        if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"images must be [B, 3, H, W] uint8, got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        net = self.module.net
        inputs = _pad_with(images.to(self.device), self.PAD, net.pixel_mean)
        grid = (-(-height // self.STRIDE), -(-width // self.STRIDE))
        timer = _Timer(self.device)
        semantic, affinity = net(inputs)
        semantic = semantic[..., : grid[0], : grid[1]].float()
        affinity = affinity[..., : grid[0], : grid[1]].float()
        node_costs, edge_costs = self.module.layer.costs(semantic, affinity)
        seconds = {"model": timer.lap()}
        distances, tile = self.distances, TILE
        if full_resolution:
            node_costs, edge_costs, distances = full_resolution_costs(
                node_costs, edge_costs, distances, (height, width), self.STRIDE
            )
            tile = self.STRIDE  # see full_resolution_costs
        labeling = solve(
            node_costs, edge_costs, self.partitionable.to(self.device), distances,
            method=self.config.solver_method, tile=tile,
        )  # fmt: skip
        if not full_resolution:
            labeling = PanopticLabeling(
                upsample_labels(labeling.classes, (height, width), self.STRIDE),
                upsample_labels(labeling.segments, (height, width), self.STRIDE),
                labeling.objective,
                labeling.info,
            )
        seconds["solver"] = timer.lap()
        return Prediction(labeling, semantic, affinity, seconds)


def _pad_with(images: torch.Tensor, multiple: int, colour: torch.Tensor) -> torch.Tensor:
    """``images [B, 3, H, W]`` → float ``[B, 3, H', W']``, padded at the bottom and right to
    multiples of ``multiple`` with ``colour [3, 1, 1]`` (the network's mean colour: zeros once
    it normalises, as detectron2 pads normalised images)."""
    height, width = images.shape[-2:]
    size = (-(-height // multiple) * multiple, -(-width // multiple) * multiple)
    padded = colour.expand(images.shape[0], 3, *size).clone()
    padded[..., :height, :width] = images
    return padded


class _Timer:
    """Wall-clock laps, synchronising the device first so GPU work is counted."""

    def __init__(self, device: torch.device):
        self.device = device
        self._last = time.perf_counter()

    def lap(self) -> float:
        synchronize(self.device)
        now = time.perf_counter()
        elapsed, self._last = now - self._last, now
        return elapsed
