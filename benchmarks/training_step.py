"""Training throughput on a CPU at the paper's sizes (issue 21, part 3): data items per second per
DataLoader worker, and one fine-tuning iteration split into its parts, with the tiny model.

Data: synthetic street scenes in the Cityscapes layout at 1024×2048, read and augmented as
``train/configs/cityscapes_finetune.yaml`` does (resize 0.5–2, crop 512×1024, flip) through
:func:`gpucops.trainer.training_batches`; items/s for 0 (in process), 1 and 2 workers.

Iteration: the same config with the tiny model (crop 512×1024 → a 128×256 cost grid, K = 19,
D = (1, 4, 16, 32, 64), N = 5, λ ∈ [1, 5000]) at ``--batch`` images per process, on the trainer's
CPU threads (``gpucops.trainer.cpu_threads``). The parts: data (the next batch from the loader),
network forward, solver forward (costs, AMWC solve, matching, P), loss, solver backward (the B·N
perturbed multiway cuts and the costs' gradient, up to the logits), network backward. Medians of
``--repeats`` iterations after a warm-up, with the range.

    .venv/bin/python benchmarks/training_step.py                 # writes data under /tmp
    .venv/bin/python benchmarks/training_step.py --batch 4 --repeats 5 --json out.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
import time
from pathlib import Path

import gpucops  # noqa: F401  (first: idle OpenMP threads sleep, as in the CLI; gpucops/_openmp.py)

# isort: split
import torch

from gpucops._openmp import threads
from gpucops.cli import format_table
from gpucops.losses import panoptic_quality_loss
from gpucops.timing import Timing
from gpucops.trainer import TrainConfig, TrainingModule, _datasets, cpu_threads, training_batches

ROOT = Path(__file__).resolve().parent.parent
PARTS = ("data", "network forward", "solver forward", "loss", "solver backward",
         "network backward")  # fmt: skip


def _config(args: argparse.Namespace, data_root: str) -> TrainConfig:
    return TrainConfig.from_yaml(
        ROOT / "train/configs/cityscapes_finetune.yaml",
        {"dataset": "synthetic", "data_root": data_root, "model": "tiny", "depth": None,
         "stem": None, "decoder_fuse": None, "synthetic_size": [1024, 2048],
         "synthetic_images": [args.images, 1], "batch_size": args.batch, "workers": 0},
    )  # fmt: skip


def data_rates(config: TrainConfig, train_set, args: argparse.Namespace) -> list[list]:
    """Items per second (and per worker) of the training loader with 0, 1, 2 workers."""
    rows = []
    batches = args.images // args.batch
    for workers in args.workers:
        loader = training_batches(
            train_set, dataclasses.replace(config, workers=workers), 0, 1, 0, batches
        )
        start = time.perf_counter()
        items = sum(len(batch["image_id"]) for batch in loader)  # worker start-up included
        rate = items / (time.perf_counter() - start)
        rows.append([workers, items, f"{rate:.2f}", f"{rate / max(1, workers):.2f}"])
    return rows


def iteration_split(config: TrainConfig, train_set, args: argparse.Namespace) -> dict:
    """Seconds of each part of ``args.repeats`` fine-tuning iterations after a warm-up."""
    torch.manual_seed(0)
    module = TrainingModule(config, train_set.partitionable)
    module.parameter_groups()  # the fine-tuning stage's frozen parts
    module.train()
    loader = iter(training_batches(train_set, config, 0, 1, 0, args.repeats + 1))
    seconds: dict[str, list[float]] = {part: [] for part in PARTS}
    for repeat in range(args.repeats + 1):
        marks = [time.perf_counter()]
        batch = next(loader)
        marks.append(time.perf_counter())
        semantic, affinity = module.net(batch["image"])
        marks.append(time.perf_counter())
        out = module.layer(semantic, affinity, batch["classes"], batch["segments"],
                           batch["void"], seed=repeat)  # fmt: skip
        marks.append(time.perf_counter())
        loss = panoptic_quality_loss(
            out.prediction, out.target, out.channel_classes, module.area_thresholds,
            (~batch["void"]).float(), config.pq_loss_weight,
        )  # fmt: skip
        marks.append(time.perf_counter())
        # up to the logits: the layer's backward (its perturbed solves) and the cost kernels'
        grads = torch.autograd.grad(loss, (semantic, affinity))
        marks.append(time.perf_counter())
        torch.autograd.backward((semantic, affinity), grads)
        marks.append(time.perf_counter())
        if repeat:  # the first is the warm-up
            for part, begin, end in zip(PARTS, marks[:-1], marks[1:], strict=True):
                seconds[part].append(end - begin)
    return seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=2, help="images per iteration")
    parser.add_argument("--images", type=int, default=8, help="training images written")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--data", help="folder of the synthetic data (default: a temporary one)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as scratch:
        config = _config(args, args.data or scratch)
        train_set, _ = _datasets(config)
        with threads(cpu_threads(config)):
            data = data_rates(config, train_set, args)
            split = iteration_split(config, train_set, args)
    total = [sum(times) for times in zip(*split.values(), strict=True)]
    print(format_table(["workers", "items", "items/s", "items/s per worker"], data))
    print()
    print(format_table(
        ["part", "seconds (range)", "share"],
        [[part, Timing(tuple(times)).text(), f"{sum(times) / sum(total):.0%}"]
         for part, times in split.items()]
        + [["iteration", Timing(tuple(total)).text(), "100%"]],
    ))  # fmt: skip
    figures = {"data": data, "split": split, "batch": args.batch, "threads": cpu_threads(config)}
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))
    return figures


if __name__ == "__main__":
    main()
