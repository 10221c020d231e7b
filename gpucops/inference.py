"""From network outputs to panoptic labelings: the problem to solve (:func:`build_problem`, at
stride 4 or at full resolution, with the solver tile it needs), its solution at image size
(:func:`solve_problem`), and :class:`Predictor`, a trained model loaded from a ``train/train.py``
checkpoint (:func:`gpucops.checkpoint.load_model`; nothing of the trainer is imported).

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
from dataclasses import dataclass, replace
from pathlib import Path

import torch
import torch.nn.functional as F

from .checkpoint import load_model
from .grid import edge_offsets
from .labeling import PanopticLabeling
from .model import ModelConfig
from .solver import DEFAULTS, solve
from .synthetic import make_problem
from .timing import synchronize

__all__ = [
    "STRIDE",
    "ImageProblem",
    "Prediction",
    "Predictor",
    "available_memory",
    "build_problem",
    "full_resolution_costs",
    "full_resolution_distances",
    "remove_small_segments",
    "solve_problem",
    "upsample_labels",
    "warm_up_solvers",
]

SOLVER_METHODS = ("parallel", "sequential")
STRIDE = 4  # the network's output stride: one grid cell of the costs covers STRIDE² pixels

# Peak bytes per image pixel of a prediction, keyed by (tiny preset, full resolution): the slopes
# between 256×512 and 512×1024 images of benchmarks/memory.py (2026-12-01, CPU).
_BYTES_PER_PIXEL = {
    (True, False): 161,
    (True, True): 1811,
    (False, False): 1147,
    (False, True): 1949,
}


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


def _check_size(size: tuple[int, int], grid: tuple[int, int], factor: int) -> None:
    """``size`` (images) must be positive and covered by the ``grid`` of stride ``factor``."""
    if not (0 < size[0] <= factor * grid[0] and 0 < size[1] <= factor * grid[1]):
        raise ValueError(
            f"size {tuple(size)} must be positive and within ×{factor} of the "
            f"{grid[0]}×{grid[1]} grid"
        )


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

    Solve it with ``tile=factor`` (:func:`build_problem` pairs it with that tile): the solver's
    greedy pre-pass then merges each stride cell's pixels over their distance-1 edges. The
    default tile 16 would also take the distance-4 edges, which come from the same stride map as
    the distance-1 ones, and over-trust them (measured: ``benchmarks/RESULTS.md``).
    """
    _check_size(size, node_costs.shape[-2:], factor)
    height, width = size
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


@dataclass(frozen=True)
class ImageProblem:
    """The AMWC problem of a batch of images, on the grid it is solved on, with the solver tile
    it must be solved with. Made by :func:`build_problem`, solved by :func:`solve_problem`.

    Attributes:
        node_costs: ``[B, K, h, w]`` float, edge_costs: ``[B, 2·|D|, h, w]`` float,
            partitionable: ``[K]`` bool, distances: D on this grid (:func:`gpucops.solve`'s).
        tile: the solver's pre-pass tile (see :func:`build_problem`).
        size: the images' ``(H, W)``.
        stride: image pixels per grid cell along each axis (the labels are upsampled by it; 1 =
            full resolution).
    """

    node_costs: torch.Tensor
    edge_costs: torch.Tensor
    partitionable: torch.Tensor
    distances: tuple[int, ...]
    tile: int
    size: tuple[int, int]
    stride: int

    @property
    def inputs(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, tuple[int, ...]]:
        """``(node_costs, edge_costs, partitionable, distances)``, the arguments of
        :func:`gpucops.solve` and the objective functions."""
        return self.node_costs, self.edge_costs, self.partitionable, self.distances

    def to(self, device: str | torch.device) -> ImageProblem:
        """The same problem on ``device`` (where the solver then runs)."""
        return replace(
            self,
            node_costs=self.node_costs.to(device),
            edge_costs=self.edge_costs.to(device),
            partitionable=self.partitionable.to(device),
        )


def build_problem(
    node_costs: torch.Tensor,
    edge_costs: torch.Tensor,
    partitionable: torch.Tensor,
    distances: tuple[int, ...],
    size: tuple[int, int],
    full_resolution: bool = False,
    stride: int = STRIDE,
) -> ImageProblem:
    """The problem to solve for stride-``stride`` costs of images of ``size``.

    Args:
        node_costs: ``[B, K, h, w]`` float and ``edge_costs`` ``[B, 2·|D|, h, w]`` float on the
            stride grid (:meth:`gpucops.layer.AMWCLayer.costs` of the network's logits);
            ``partitionable`` ``[K]`` bool; ``distances`` D on the stride grid.
        size: the images' ``(H, W)``, at most ``(stride·h, stride·w)``.
        full_resolution: solve on the image's own grid (:func:`full_resolution_costs`) instead of
            the stride grid.
    Returns:
        :class:`ImageProblem`: at stride ``stride`` the costs as given, with the solver's
        default tile; at full resolution the upsampled costs with ``tile = stride`` (each stride
        cell's pixels merged first, see :func:`full_resolution_costs`).
    """
    size = (int(size[0]), int(size[1]))
    _check_size(size, node_costs.shape[-2:], stride)
    if not full_resolution:
        return ImageProblem(
            node_costs, edge_costs, partitionable, tuple(distances), DEFAULTS.tile, size, stride
        )
    nodes, edges, full = full_resolution_costs(node_costs, edge_costs, distances, size, stride)
    return ImageProblem(nodes, edges, partitionable, full, stride, size, 1)


def solve_problem(problem: ImageProblem, method: str = "parallel") -> PanopticLabeling:
    """Solve ``problem`` with its tile (:func:`gpucops.solve` with ``method``; the backend
    follows the costs' device) and return the labeling at image size: ``classes``/``segments``
    ``[B, H, W]`` int64 (stride-grid labels upsampled, nearest), ``objective [B]`` of the solved
    grid's problem."""
    labeling = solve(*problem.inputs, method=method, tile=problem.tile)
    if problem.stride == 1:
        return labeling
    return PanopticLabeling(
        upsample_labels(labeling.classes, problem.size, problem.stride),
        upsample_labels(labeling.segments, problem.size, problem.stride),
        labeling.objective,
        labeling.info,
    )


def warm_up_solvers(device: str | torch.device, methods: tuple[str, ...] = SOLVER_METHODS) -> None:
    """Load the solvers' builds for ``device`` (host libraries, CUDA modules) with a tiny solve
    of each method, so that no timed call pays for a build or a library load."""
    tiny = make_problem(1, 8, 8, 3, (1,), device=device)
    for method in methods:
        solve(tiny.node_costs, tiny.edge_costs, tiny.partitionable, (1,), method=method)


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

    STRIDE = STRIDE
    PAD = 32  # inputs are padded to a multiple of the backbone's largest stride

    def __init__(
        self,
        checkpoint: str | Path,
        device: str | torch.device = "cpu",
        categories: list[dict] | None = None,
    ):
        self.device = torch.device(device)
        self.model = load_model(checkpoint, self.device)
        if categories is not None:
            self.model = self.model.with_categories(categories)
        self.partitionable = self.model.layer.partitionable.cpu()  # [K] bool

    @property
    def categories(self) -> list[dict]:
        return self.model.categories

    @property
    def distances(self) -> tuple[int, ...]:
        return self.model.layer.distances

    def memory_estimate(
        self, height: int, width: int, batch: int = 1, full_resolution: bool = False
    ) -> int:
        """Peak bytes one call on ``batch`` images of ``height × width`` is expected to add:
        network activations and the solver's graph and scratch, as measured per image pixel by
        ``benchmarks/memory.py`` (CPU, K = 19, D = (1, 4, 16, 32, 64); models other than the tiny
        preset are charged as the full one). An estimate to refuse hopeless work up front, not a
        bound."""
        tiny = self.model.net.config.widths == ModelConfig.tiny().widths
        return int(_BYTES_PER_PIXEL[tiny, full_resolution] * height * width * batch)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, full_resolution: bool = False) -> Prediction:
        """Predict ``images [B, 3, H, W]`` uint8 RGB: the AMWC on the stride-4 grid with labels
        upsampled ×4, or with ``full_resolution`` on the image's own grid."""
        if images.dim() != 4 or images.shape[1] != 3 or images.dtype != torch.uint8:
            raise ValueError(f"images must be [B, 3, H, W] uint8, got {tuple(images.shape)}")
        height, width = images.shape[-2:]
        net, layer = self.model.net, self.model.layer
        inputs = _pad_with(images.to(self.device), self.PAD, net.pixel_mean)
        grid = (-(-height // self.STRIDE), -(-width // self.STRIDE))
        timer = _Timer(self.device)
        semantic, affinity = net(inputs)
        semantic = semantic[..., : grid[0], : grid[1]].float()
        affinity = affinity[..., : grid[0], : grid[1]].float()
        node_costs, edge_costs = layer.costs(semantic, affinity)
        seconds = {"model": timer.lap()}
        problem = build_problem(
            node_costs, edge_costs, layer.partitionable, layer.distances, (height, width),
            full_resolution, self.STRIDE,
        )  # fmt: skip
        labeling = solve_problem(problem, layer.method)
        seconds["solver"] = timer.lap()
        return Prediction(labeling, semantic, affinity, seconds)


def available_memory(device: torch.device) -> int | None:
    """Bytes free for new work on ``device``: CUDA's free memory, or the kernel's
    ``MemAvailable`` for the CPU; ``None`` where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[0]
    try:
        with open("/proc/meminfo") as handle:
            fields = dict(line.split(":", 1) for line in handle)
        return int(fields["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return None


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
