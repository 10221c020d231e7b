"""Benchmark of the AMWC layer: forward (solve + matching) and backward (B·N perturbed multiway
cuts in one solver call) with the PQ surrogate, on synthetic Cityscapes-like training crops.

The official code needed 2.5 s (AMWC) + 6.1 s (MWC) per iteration of this kind on CPUs
(supplementary Table 3).

    .venv/bin/python benchmarks/layer.py                        # B=24, 128×256, N=5, CPU
    .venv/bin/python benchmarks/layer.py --device cuda --size 256 512
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import dataclass

import gpucops  # noqa: F401  (first: idle OpenMP threads sleep, as in the CLI; gpucops/_openmp.py)

# isort: split
import torch

from gpucops.cli import format_table, write_json
from gpucops.layer import AMWCLayer, LayerOutput
from gpucops.losses import panoptic_quality_loss
from gpucops.synthetic import SyntheticProblem, make_problem
from gpucops.timing import synchronize


@dataclass
class TrainingStep:
    """The layer's training step on a synthetic batch: logits = −costs of
    :func:`gpucops.synthetic.make_problem`, its ground truth, the PQ surrogate (COPS' area
    thresholds at stride 4, loss weight 10)."""

    layer: AMWCLayer
    problem: SyntheticProblem
    thresholds: torch.Tensor

    def forward(self, seed: int) -> tuple[LayerOutput, torch.Tensor, tuple[torch.Tensor, ...]]:
        """Costs, solve, alignment and loss: ``(output, loss, (semantic, affinity logits))``."""
        p = self.problem
        logits = ((-p.node_costs).requires_grad_(), (-p.edge_costs).requires_grad_())
        out = self.layer(*logits, p.classes, p.segments, seed=seed)
        loss = panoptic_quality_loss(
            out.prediction, out.target, out.channel_classes, self.thresholds, loss_weight=10
        )
        return out, loss, logits


def training_step(
    device: torch.device | str,
    batch: int,
    size: tuple[int, int],
    classes: int,
    distances: tuple[int, ...],
    samples: int,
) -> TrainingStep:
    p = make_problem(batch, *size, classes, distances, seed=0, device=device)
    layer = AMWCLayer(p.partitionable, p.distances, num_samples=samples).to(device)
    return TrainingStep(layer, p, torch.where(p.partitionable, 200 / 4, 2048 / 16).to(device))


def run(args: argparse.Namespace) -> dict:
    device = torch.device(args.device)
    height, width = args.size
    step = training_step(
        device, args.batch, args.size, args.classes, tuple(args.distances), args.samples
    )
    forward_times, backward_times = [], []
    for repeat in range(args.repeats + 1):  # the first is a warm-up
        synchronize(device)
        start = time.perf_counter()
        _, loss, _ = step.forward(seed=repeat)
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
    write_json(args.json, record)
    return record


if __name__ == "__main__":
    main()
