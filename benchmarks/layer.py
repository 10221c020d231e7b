"""Benchmark of the AMWC layer: forward (solve + matching) and backward (B·N perturbed multiway
cuts in one solver call) with the PQ surrogate, on synthetic Cityscapes-like training crops.

The official code needed 2.5 s (AMWC) + 6.1 s (MWC) per iteration of this kind on CPUs
(supplementary Table 3).

    .venv/bin/python benchmarks/layer.py                        # B=24, 128×256, N=5, CPU
    .venv/bin/python benchmarks/layer.py --device cuda --size 256 512
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import gpucops  # noqa: F401  (first: idle OpenMP threads sleep, as in the CLI; gpucops/_openmp.py)

# isort: split
import torch

from gpucops.cli import format_table
from gpucops.layer import AMWCLayer
from gpucops.losses import panoptic_quality_loss
from gpucops.synthetic import make_problem
from gpucops.timing import synchronize


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    height, width = args.size
    p = make_problem(
        args.batch, height, width, args.classes, tuple(args.distances), seed=0, device=device
    )
    layer = AMWCLayer(p.partitionable, p.distances, num_samples=args.samples).to(device)
    thresholds = torch.where(p.partitionable, 200 / 4, 2048 / 16).to(device)
    forward_times, backward_times = [], []
    for repeat in range(args.repeats + 1):  # the first is a warm-up
        semantic = (-p.node_costs).requires_grad_()
        affinity = (-p.edge_costs).requires_grad_()
        synchronize(device)
        start = time.perf_counter()
        out = layer(semantic, affinity, p.classes, p.segments, seed=repeat)
        loss = panoptic_quality_loss(
            out.prediction, out.target, out.channel_classes, thresholds, loss_weight=10
        )
        synchronize(device)
        middle = time.perf_counter()
        loss.backward()
        synchronize(device)
        end = time.perf_counter()
        if repeat:
            forward_times.append(middle - start)
            backward_times.append(end - middle)
    forward_s = statistics.median(forward_times)
    backward_s = statistics.median(backward_times)
    record = {
        "device": str(device),
        "batch": args.batch,
        "size": f"{height}×{width}",
        "K": args.classes,
        "N": args.samples,
        "forward s": round(forward_s, 3),
        "backward s": round(backward_s, 3),
        "total s": round(forward_s + backward_s, 3),
        "vs official 8.6 s": round(8.6 / (forward_s + backward_s), 2),
    }
    print(format_table(list(record), [list(record.values())]))
    return record


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=24)
    parser.add_argument("--size", type=int, nargs=2, default=(128, 256), metavar=("H", "W"))
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--distances", type=int, nargs="+", default=[1, 4, 16, 32, 64])
    parser.add_argument("--samples", type=int, default=5, help="N perturbations per image")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--json", help="also write the record as JSON here")
    args = parser.parse_args(argv)
    record = run(args)
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(record, handle, indent=2)
    return record


if __name__ == "__main__":
    main()
