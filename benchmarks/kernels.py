"""Benchmark table of the Triton kernels against their torch references (GPU only).

For each kernel: time of the Triton kernel and of the torch reference in the same run
(``triton.testing.do_bench``, median), their ratio, and the kernel's achieved bandwidth (bytes
that must move at least once, over time) next to the device's measured copy bandwidth.

    .venv/bin/python benchmarks/kernels.py     # B=8, C=256, 256×512, D=(1,4,16,32,64)
    .venv/bin/python benchmarks/kernels.py --json out.json
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import gpucops  # noqa: F401  (first: idle OpenMP threads sleep, as in the CLI; gpucops/_openmp.py)

# isort: split
import torch

from gpucops.cli import format_table, write_json
from gpucops.kernels import (
    edge_costs_from_logits,
    edge_feature_shift,
    node_costs_from_logits,
    perturb_costs,
)


def _bench(function, device: torch.device) -> float:
    """Median seconds of one call."""
    if device.type == "cuda":
        import triton.testing

        return triton.testing.do_bench(function, warmup=25, rep=200) / 1e3
    function()  # a smoke run off the GPU (tests): one timed call
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def _shift_step(features, distances, grads, implementation):
    maps = edge_feature_shift(features, distances, implementation)
    return torch.autograd.grad(maps, features, grads)


def kernel_cases(
    device: torch.device | str,
    batch: int,
    channels: int,
    classes: int,
    size: tuple[int, int],
    distances: tuple[int, ...],
    perturbations: int,
) -> list[tuple[str, Callable[[], object], Callable[[], object], int]]:
    """``(name, Triton call, torch reference call, bytes moved at least once)`` of every kernel
    on seeded random inputs of the given shapes."""
    generator = torch.Generator().manual_seed(0)

    def randn(*shape: int, grad: bool = False) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(device).requires_grad_(grad)

    height, width = size
    shifted = tuple(d for d in distances if d > 1)
    element = torch.finfo(torch.float32).bits // 8
    features = randn(batch, channels, height, width, grad=True)
    grads = [randn(batch, 2 * channels, height, width) for _ in shifted]
    plane = batch * channels * height * width * element
    semantic = randn(batch, classes, height, width)
    affinity = randn(batch, 2 * len(distances), height, width)
    ones = torch.ones(len(distances), device=device)
    costs = randn(batch, classes, height, width)
    lambdas = torch.linspace(1, 5000, perturbations, device=device)
    return [
        (
            "shift forward",
            lambda: edge_feature_shift(features, shifted, "triton"),
            lambda: edge_feature_shift(features, shifted, "torch"),
            plane * (1 + 2 * len(shifted)),
        ),
        (
            "shift forward+backward",
            lambda: _shift_step(features, shifted, grads, "triton"),
            lambda: _shift_step(features, shifted, grads, "torch"),
            plane * (1 + 2 * len(shifted)) + plane * (2 * len(shifted) + 1),
        ),
        (
            "node costs + dropout",
            lambda: node_costs_from_logits(semantic, 1.0, 0.0, 0.1, 7, "triton"),
            lambda: node_costs_from_logits(semantic, 1.0, 0.0, 0.1, 7, "torch"),
            2 * semantic.numel() * element,
        ),
        (
            "edge costs + dropout",
            lambda: edge_costs_from_logits(affinity, ones, ones, 0.1, 8, "triton"),
            lambda: edge_costs_from_logits(affinity, ones, ones, 0.1, 8, "torch"),
            2 * affinity.numel() * element,
        ),
        (
            f"perturbation N={perturbations}",
            lambda: perturb_costs(costs, costs, lambdas, "triton"),
            lambda: perturb_costs(costs, costs, lambdas, "torch"),
            (2 + perturbations) * costs.numel() * element,
        ),
    ]


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    batch, channels, (height, width) = args.batch, args.channels, args.size
    element = torch.finfo(torch.float32).bits // 8
    records = []

    copy_source = torch.empty(batch * channels * height * width * 8, device=device)
    copy_target = torch.empty_like(copy_source)
    copy_s = _bench(lambda: copy_target.copy_(copy_source), device)
    copy_gbs = 2 * copy_source.numel() * element / copy_s / 1e9

    cases = kernel_cases(
        device, batch, channels, args.classes, (height, width), tuple(args.distances),
        args.perturbations,
    )  # fmt: skip
    for name, kernel, reference, moved in cases:
        kernel_s, reference_s = _bench(kernel, device), _bench(reference, device)
        records.append(
            {
                "kernel": name,
                "triton ms": round(kernel_s * 1e3, 3),
                "torch ms": round(reference_s * 1e3, 3),
                "speed-up": round(reference_s / kernel_s, 2),
                "GB/s": round(moved / kernel_s / 1e9, 1),
                "of copy": f"{moved / kernel_s / 1e9 / copy_gbs:.0%}",
            }
        )
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
    print(f"device {name}; copy bandwidth {copy_gbs:.0f} GB/s")
    print(format_table(list(records[0]), [list(r.values()) for r in records]))
    return records


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cpu: a smoke run (interpreter)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--channels", type=int, default=256)
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--size", type=int, nargs=2, default=(256, 512), metavar=("H", "W"))
    parser.add_argument("--distances", type=int, nargs="+", default=[1, 4, 16, 32, 64])
    parser.add_argument("--perturbations", type=int, default=5)
    parser.add_argument("--json", help="also write the records as JSON here")
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("benchmarks/kernels.py times Triton on a GPU; no CUDA device here (skipped)")
    records = run(args)
    write_json(args.json, records)
    return records


if __name__ == "__main__":
    main()
