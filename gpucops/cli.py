"""The ``gpucops`` command line.

``gpucops demo`` builds seeded synthetic Cityscapes-like AMWC problems, solves them with the
sequential reference and the parallel solver and prints a table comparing them (later issues grow
it into the end-to-end demo).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch
from tqdm import tqdm

from .objective import objective
from .solve import solve
from .synthetic import make_problem

__all__ = ["format_table", "main"]


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table: right-aligned columns, a rule under the header."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    lines = ["  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _trivial_objective(problem) -> torch.Tensor:
    """Objective of the trivial labeling: argmin class per pixel, every pixel its own segment."""
    batch, _, height, width = problem.node_costs.shape
    classes = problem.node_costs.argmin(dim=1)
    singletons = torch.arange(height * width).view(1, height, width).expand(batch, -1, -1)
    return objective(
        problem.node_costs,
        problem.edge_costs,
        problem.partitionable,
        classes,
        singletons,
        problem.distances,
    )


def _timed_solve(problem, method: str):
    start = time.perf_counter()
    lab = solve(
        problem.node_costs,
        problem.edge_costs,
        problem.partitionable,
        problem.distances,
        method=method,
    )
    return lab, time.perf_counter() - start


def demo(args: argparse.Namespace) -> None:
    sizes = [(args.height // 2, args.width // 2), (args.height, args.width)]
    rows = []
    for height, width in tqdm(sizes, desc="solving", unit="size"):
        # the Cityscapes distances that fit this grid
        distances = tuple(d for d in (1, 4, 16, 32, 64) if d < max(height, width))
        problem = make_problem(args.batch, height, width, args.classes, distances, seed=args.seed)
        trivial = _trivial_objective(problem)
        sequential, sequential_seconds = _timed_solve(problem, "sequential")
        parallel, parallel_seconds = _timed_solve(problem, "parallel")
        quality = (trivial - parallel.objective) / (trivial - sequential.objective)
        raw_accuracy = (problem.node_costs.argmin(dim=1) == problem.classes).double().mean((1, 2))
        accuracy = (parallel.classes == problem.classes).double().mean(dim=(1, 2))
        for b in range(args.batch):
            rows.append(
                [
                    f"{height}×{width}",
                    b,
                    f"{trivial[b]:.0f}",
                    f"{sequential.objective[b]:.0f}",
                    f"{parallel.objective[b]:.0f}",
                    f"{quality[b]:.4f}",
                    f"{100 * raw_accuracy[b]:.1f}%",
                    f"{100 * accuracy[b]:.1f}%",
                    f"{int(parallel.segments[b].max()) + 1}/{int(problem.segments[b].max()) + 1}",
                    f"{sequential_seconds / args.batch:.2f}",
                    f"{parallel_seconds / args.batch:.2f}",
                    parallel.info["rounds"],
                ]
            )
    headers = [
        "grid",
        "image",
        "trivial obj",
        "sequential obj",
        "parallel obj",
        "quality",
        "argmin acc",
        "solved acc",
        "segments/gt",
        "seq s/img",
        "par s/img",
        "rounds",
    ]
    print(f"\nSynthetic street scenes, K = {args.classes}, D = {problem.distances}, CPU")
    print(format_table(headers, rows))
    print(
        "quality = (trivial − parallel) / (trivial − sequential) objective improvement; "
        "solved acc and segments are the parallel solver's"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gpucops", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    demo_parser = commands.add_parser(
        "demo", help="solve synthetic street-scene AMWC problems and print a summary table"
    )
    demo_parser.add_argument("--height", type=int, default=128, help="largest grid height (128)")
    demo_parser.add_argument("--width", type=int, default=256, help="largest grid width (256)")
    demo_parser.add_argument("--batch", type=int, default=2, help="images per size (2)")
    demo_parser.add_argument(
        "--classes", type=int, default=19, help="K: 19 (Cityscapes) or 133 (COCO)"
    )
    demo_parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic scenes")
    demo_parser.set_defaults(run=demo)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
