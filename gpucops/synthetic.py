"""Seeded synthetic AMWC problems that look like Cityscapes (K = 19) or COCO (K = 133) scenes.

A street scene is drawn at cost level: a skyline of buildings and trees under the sky, a road that
widens towards the camera with sidewalks and terrain beside it, poles with signs, and thing
instances (cars, people, bikes, ...) standing on the ground, larger when nearer, nearer ones
occluding farther ones. Node costs are noisy negative class logits and edge costs noisy affinities
(positive where both end-points lie in one ground-truth segment), with spatially correlated noise
so that errors come in blobs, as a network's do. Image-level datasets come with the data issue;
this module feeds the solver's tests, benchmarks and the demo.

Every image b of a batch is drawn from its own generator seeded by (seed, b), so image b does not
depend on the batch size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ._validate import check_distances
from .grid import edge_offsets

__all__ = [
    "CITYSCAPES_CLASSES",
    "SyntheticProblem",
    "class_roles",
    "make_problem",
    "make_scene",
    "noisy_costs",
]

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip

_STUFF_ROLES = (
    "road",
    "sidewalk",
    "building",
    "vegetation",
    "sky",
    "terrain",
    "pole",
    "sign",
    "wall",
)
# thing kind → (share of instances, height/width ratio, relative size)
_THING_KINDS = {
    "car": (0.45, 0.55, 1.0),
    "person": (0.25, 2.6, 0.75),
    "bicycle": (0.08, 1.0, 0.5),
    "rider": (0.05, 2.2, 0.75),
    "truck": (0.06, 0.8, 1.5),
    "bus": (0.05, 0.8, 1.7),
    "motorcycle": (0.04, 1.0, 0.5),
    "train": (0.02, 0.6, 2.0),
}

_CITYSCAPES_ROLES = {
    "road": 0, "sidewalk": 1, "building": 2, "wall": 3, "pole": 5, "sign": 7, "vegetation": 8,
    "terrain": 9, "sky": 10, "person": 11, "rider": 12, "car": 13, "truck": 14, "bus": 15,
    "train": 16, "motorcycle": 17, "bicycle": 18,
}  # fmt: skip
# COCO panoptic, contiguous ids: 80 things (0–79) then 53 stuff classes (80–132).
_COCO_ROLES = {
    "road": 100, "sidewalk": 123, "building": 129, "wall": 131, "pole": 117, "sign": 80,
    "vegetation": 116, "terrain": 125, "sky": 119, "person": 0, "rider": 0, "car": 2,
    "truck": 7, "bus": 5, "train": 6, "motorcycle": 3, "bicycle": 1,
}  # fmt: skip


def class_roles(num_classes: int) -> tuple[dict[str, int], torch.Tensor]:
    """Class id of each scene role and ``partitionable [K]`` for K classes.

    K = 19 uses the Cityscapes train ids, K = 133 COCO panoptic's contiguous ids; any other K ≥ 1
    makes classes ``[0, ⌈K/2⌉)`` stuff and the rest things, roles assigned cyclically.
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be ≥ 1, got {num_classes}")
    partitionable = torch.zeros(num_classes, dtype=torch.bool)
    if num_classes == 19:
        partitionable[11:] = True
        return dict(_CITYSCAPES_ROLES), partitionable
    if num_classes == 133:
        partitionable[:80] = True
        return dict(_COCO_ROLES), partitionable
    num_stuff = (num_classes + 1) // 2
    partitionable[num_stuff:] = True
    roles = {role: i % num_stuff for i, role in enumerate(_STUFF_ROLES)}
    if num_classes > num_stuff:
        for i, kind in enumerate(_THING_KINDS):
            roles[kind] = num_stuff + i % (num_classes - num_stuff)
    return roles, partitionable


def _uniform(generator: torch.Generator, low: float, high: float) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def make_scene(
    height: int, width: int, num_classes: int = 19, generator: torch.Generator | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """One ground-truth street scene.

    Returns:
        ``classes [H, W]`` int64 and ``segments [H, W]`` int64 (compact panoptic ids: one per
        stuff class present, one per thing instance, numbered by first pixel in row-major order).
    """
    generator = generator if generator is not None else torch.Generator().manual_seed(0)
    roles, partitionable = class_roles(num_classes)
    rows = torch.arange(height, dtype=torch.float32).view(-1, 1)
    cols = torch.arange(width, dtype=torch.float32).view(1, -1)
    horizon = int(height * _uniform(generator, 0.35, 0.5))
    classes = torch.full((height, width), roles["sky"], dtype=torch.int64)
    instances = torch.full((height, width), -1, dtype=torch.int64)

    # skyline: blocks of building / vegetation / wall reaching up from the horizon
    left = 0
    while left < width:
        block = max(2, int(width * _uniform(generator, 0.08, 0.3)))
        top = int(height * _uniform(generator, 0.03, 0.3))
        kind = torch.multinomial(torch.tensor([0.6, 0.3, 0.1]), 1, generator=generator).item()
        role = ("building", "vegetation", "wall")[kind]
        classes[top:horizon, left : left + block] = roles[role]
        left += block

    # ground: road trapezoid, sidewalks beside it, terrain at the far sides
    depth = ((rows - horizon) / max(height - horizon, 1)).clamp(min=0)
    centre = width * _uniform(generator, 0.4, 0.6)
    road_half = width * (0.04 + 0.5 * depth)
    walk_half = road_half + width * (0.02 + 0.25 * depth)
    offset = (cols - centre).abs()
    ground = rows >= horizon
    classes = torch.where(ground & (offset >= walk_half), roles["terrain"], classes)
    classes = torch.where(ground & (offset < walk_half), roles["sidewalk"], classes)
    classes = torch.where(ground & (offset < road_half), roles["road"], classes)

    # poles with signs along the sidewalks
    for _ in range(int(torch.randint(1, 4, (), generator=generator))):
        column = int(width * _uniform(generator, 0.02, 0.98))
        foot = int(horizon + (height - horizon) * _uniform(generator, 0.0, 0.4))
        thickness = max(1, width // 256)
        top = max(0, foot - int(height * 0.35))
        classes[top:foot, column : column + thickness] = roles["pole"]
        sign = max(2, height // 40)
        classes[top : top + sign, max(0, column - sign // 2) : column + sign // 2 + 1] = roles[
            "sign"
        ]

    # things on the ground, drawn far to near so nearer ones occlude
    if "car" in roles:
        kinds = list(_THING_KINDS)
        shares = torch.tensor([_THING_KINDS[k][0] for k in kinds])
        count = int(torch.randint(3, 6 + height * width // 8192, (), generator=generator))
        count = min(count, 40)
        feet = sorted(
            int(horizon + (height - horizon) * _uniform(generator, 0.05, 1.0)) for _ in range(count)
        )
        for index, foot in enumerate(feet):
            kind = kinds[int(torch.multinomial(shares, 1, generator=generator))]
            _, aspect, size = _THING_KINDS[kind]
            scale = (foot - horizon) / max(height - horizon, 1)
            box_h = max(2.0, height * (0.06 + 0.3 * scale) * size * min(aspect, 1.2))
            box_w = max(2.0, box_h / aspect)
            x = width * _uniform(generator, 0.05, 0.95)
            y = foot - box_h / 2
            if kind in ("person", "rider"):  # upright ellipse
                inside = ((rows - y) / (box_h / 2)) ** 2 + ((cols - x) / (box_w / 2)) ** 2 <= 1
            else:  # box with rounded top corners
                inside = ((rows - y).abs() <= box_h / 2) & ((cols - x).abs() <= box_w / 2)
                corner = ((rows - (y - box_h / 4)) / (box_h / 2)) ** 2 + (
                    (cols - x) / (box_w / 1.7)
                ) ** 2
                inside = inside & ((rows > y - box_h / 4) | (corner <= 1))
            classes = torch.where(inside, roles[kind], classes)
            instances = torch.where(inside, index, instances)

    # panoptic ids: (class) for stuff, (class, instance) for things; compact by first pixel
    thing = partitionable[classes] & (instances >= 0)
    key = torch.where(thing, num_classes + instances, classes).flatten()
    unique, inverse = torch.unique(key, return_inverse=True)
    first = torch.full_like(unique, key.numel()).scatter_reduce_(
        0, inverse, torch.arange(key.numel()), reduce="amin"
    )
    rank = torch.empty_like(first)
    rank[torch.argsort(first)] = torch.arange(first.numel())
    return classes, rank[inverse].view(height, width)


def _smooth_noise(shape: tuple[int, ...], generator: torch.Generator, radius: int) -> torch.Tensor:
    """Unit-variance Gaussian noise ``[N, C, H, W]``, spatially correlated over about ``radius``
    pixels: white noise on a grid ``radius`` times coarser, upsampled bilinearly (linear in the
    number of pixels, so full-resolution COCO-sized problems stay cheap to make)."""
    batch, channels, height, width = shape
    if radius <= 0:
        return torch.randn(shape, generator=generator)
    coarse = (batch, channels, height // radius + 2, width // radius + 2)
    noise = F.interpolate(
        torch.randn(coarse, generator=generator), size=(height, width), mode="bilinear"
    )
    return noise / noise.flatten(1).std(dim=1).clamp(min=1e-6).view(-1, 1, 1, 1)


def _edge_cost_maps(
    segments: torch.Tensor,
    distances: tuple[int, ...],
    generator: torch.Generator,
    strength: float,
    noise: float,
) -> torch.Tensor:
    """Noisy affinity costs ``[2·|D|, H, W]`` of one image (0 at masked positions)."""
    height, width = segments.shape
    maps = torch.zeros(2 * len(distances), height, width)
    radius = max(1, min(height, width) // 64)
    correlated = _smooth_noise((2 * len(distances), 1, height, width), generator, radius)
    white = torch.randn((2 * len(distances), height, width), generator=generator)
    for i, d in enumerate(distances):
        before, after = edge_offsets(d)
        # longer edges are less certain, as in trained COPS models
        scale = strength / (1.0 + 0.15 * i)
        if d < height:
            same = segments[: height - d] == segments[d:]
            value = torch.where(same, scale, -scale)
            value = value + noise * (correlated[2 * i, 0] + white[2 * i])[before : height - after]
            maps[2 * i, before : height - after] = value
        if d < width:
            same = segments[:, : width - d] == segments[:, d:]
            value = torch.where(same, scale, -scale)
            value = (
                value
                + noise * (correlated[2 * i + 1, 0] + white[2 * i + 1])[:, before : width - after]
            )
            maps[2 * i + 1, :, before : width - after] = value
    return maps


def noisy_costs(
    classes: torch.Tensor,
    segments: torch.Tensor,
    num_classes: int,
    distances: tuple[int, ...],
    generator: torch.Generator,
    node_noise: float = 0.6,
    edge_noise: float = 1.5,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Costs a trained network might give for the ground truth ``classes``, ``segments``
    ``[H, W]`` (int64; class −1 = void, where the node costs are noise only): node costs
    ``[K, H, W]`` = ``−(3·onehot(class) + node_noise·(correlated + white noise))`` and edge costs
    ``[2·|D|, H, W]`` = ``±2/(1 + 0.15·i) + edge_noise·(correlated + white noise)`` for distance
    index i, positive where both end-points share a segment. Float32, on the CPU."""
    height, width = classes.shape
    radius = max(1, min(height, width) // 32)
    noise = _smooth_noise((1, num_classes, height, width), generator, radius)[0]
    noise = noise + torch.randn((num_classes, height, width), generator=generator)
    one_hot = F.one_hot(classes.clamp(min=0), num_classes).permute(2, 0, 1).float()
    logits = 3.0 * one_hot * (classes >= 0) + node_noise * noise
    return -logits, _edge_cost_maps(segments, distances, generator, 2.0, edge_noise)


@dataclass(frozen=True)
class SyntheticProblem:
    """A batch of synthetic grid AMWC problems with their ground truth.

    Attributes:
        node_costs: ``[B, K, H, W]`` float32, lower = better.
        edge_costs: ``[B, 2·|D|, H, W]`` float32, positive = attractive, 0 at masked positions.
        partitionable: ``[K]`` bool.
        distances: D.
        classes: ``[B, H, W]`` int64 ground-truth classes.
        segments: ``[B, H, W]`` int64 ground-truth panoptic segments (compact per image).
    """

    node_costs: torch.Tensor
    edge_costs: torch.Tensor
    partitionable: torch.Tensor
    distances: tuple[int, ...]
    classes: torch.Tensor
    segments: torch.Tensor


def make_problem(
    batch: int = 1,
    height: int = 128,
    width: int = 256,
    num_classes: int = 19,
    distances: tuple[int, ...] = (1, 4, 16, 32, 64),
    seed: int = 0,
    node_noise: float = 0.6,
    edge_noise: float = 1.5,
    device: torch.device | str = "cpu",
) -> SyntheticProblem:
    """A seeded batch of Cityscapes-like (K = 19) or COCO-like (K = 133) AMWC problems.

    Each image is a :func:`make_scene` with :func:`noisy_costs`.
    """
    if batch < 0:
        raise ValueError(f"batch must be ≥ 0, got {batch}")
    if height < 1 or width < 1:
        raise ValueError(f"height and width must be ≥ 1, got {height}×{width}")
    distances = check_distances(distances, height, width)
    _, partitionable = class_roles(num_classes)
    node_costs, edge_costs, all_classes, all_segments = [], [], [], []
    for b in range(batch):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + b)
        classes, segments = make_scene(height, width, num_classes, generator)
        nodes, edges = noisy_costs(
            classes, segments, num_classes, distances, generator, node_noise, edge_noise
        )
        node_costs.append(nodes)
        edge_costs.append(edges)
        all_classes.append(classes)
        all_segments.append(segments)

    def stack(
        items: list[torch.Tensor], shape: tuple[int, ...], dtype: torch.dtype
    ) -> torch.Tensor:
        return (torch.stack(items) if items else torch.zeros(shape, dtype=dtype)).to(device)

    return SyntheticProblem(
        node_costs=stack(node_costs, (0, num_classes, height, width), torch.float32),
        edge_costs=stack(edge_costs, (0, 2 * len(distances), height, width), torch.float32),
        partitionable=partitionable.to(device),
        distances=distances,
        classes=stack(all_classes, (0, height, width), torch.int64),
        segments=stack(all_segments, (0, height, width), torch.int64),
    )
