"""Benchmark table of the AMWC solvers on synthetic Cityscapes-like problems.

For each (size, K, batch): time of the parallel solver (median and min–max over ``--repeats``
after a warm-up, with device synchronisation), rounds, and — where the sequential reference
finishes in reasonable time — its time in the same run (``--sequential-repeats``; its build is
loaded by a tiny solve first), the speed ratio of the medians, both objectives and the quality
ratio (trivial − parallel) / (trivial − sequential) of objective improvements.

    .venv/bin/python benchmarks/solver.py                       # the default table (CPU)
    .venv/bin/python benchmarks/solver.py --device cuda --json out.json
    .venv/bin/python benchmarks/solver.py --sizes 256x512 --classes 19 --batches 1 8
    .venv/bin/python benchmarks/solver.py --tile 0 --top-fraction none --tail 0  # plain rounds
"""

from __future__ import annotations

import argparse

import gpucops

# isort: split
import torch

from gpucops.cli import format_table, write_json
from gpucops.inference import warm_up_solvers
from gpucops.objectives import improvement_ratio, trivial_objective
from gpucops.solver import DEFAULTS
from gpucops.synthetic import make_problem
from gpucops.timing import Timing, median_time

CITYSCAPES_DISTANCES = (1, 4, 16, 32, 64)


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device)
    records = []
    for size in args.sizes:
        height, width = (int(v) for v in size.split("x"))
        for num_classes in args.classes:
            for batch in args.batches:
                if batch * height * width * num_classes > args.max_entries:
                    print(f"{size:>10} K={num_classes:<3} B={batch:<2} skipped (--max-entries)")
                    continue
                p = make_problem(
                    batch,
                    height,
                    width,
                    num_classes,
                    CITYSCAPES_DISTANCES,
                    seed=args.seed,
                    device=device,
                )
                solve_args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
                parallel, parallel_s = median_time(
                    lambda a=solve_args: _solve(a, args), device, args.repeats
                )
                record = {
                    "size": size,
                    "K": num_classes,
                    "batch": batch,
                    "device": str(device),
                    **parallel_s.record("parallel_s"),
                    "rounds": parallel.info["rounds"],
                    "parallel_objective": parallel.objective.sum().item(),
                }
                if height * width * batch <= args.sequential_limit:
                    trivial = trivial_objective(*solve_args)
                    sequential, sequential_s = median_time(
                        lambda a=solve_args: gpucops.solve(*a, method="sequential"),
                        device,
                        args.sequential_repeats,
                        warmup=0,  # main loaded the build; the greedy keeps no cache
                    )
                    gains = improvement_ratio(trivial, parallel.objective, sequential.objective)
                    record.update(
                        **sequential_s.record("sequential_s"),
                        speedup=sequential_s.median / parallel_s.median,
                        sequential_objective=sequential.objective.sum().item(),
                        quality_min=gains.min().item(),
                        quality_mean=gains.mean().item(),
                    )
                records.append(record)
                print(_row(record), flush=True)
    return records


def _solve(problem: tuple, args: argparse.Namespace) -> gpucops.PanopticLabeling:
    """The parallel solve with the options of the command line, refined after if asked."""
    labeling = gpucops.solve(
        *problem, tile=args.tile, top_fraction=args.top_fraction, tail=args.tail
    )
    return gpucops.refine(labeling, *problem, rounds=args.refine) if args.refine else labeling


def _per_image(r: dict, key: str) -> str:
    """``"median (min–max)"`` seconds per image of a record's timing ``key``."""
    return Timing(tuple(r[f"{key}_times"])).per(r["batch"]).text()


def _row(r: dict) -> str:
    seq = r.get("sequential_s")
    return (
        f"{r['size']:>10} K={r['K']:<3} B={r['batch']:<2} parallel "
        f"{_per_image(r, 'parallel_s')} s/img ({r['rounds']} rounds)"
        + (
            ""
            if seq is None
            else f"  sequential {_per_image(r, 'sequential_s')} s/img  ×{r['speedup']:.1f}  "
            f"quality min {r['quality_min']:.4f} mean {r['quality_mean']:.4f}"
        )
    )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--sizes", nargs="+", default=["128x256", "256x512", "1024x2048"])
    parser.add_argument("--classes", nargs="+", type=int, default=[19, 133])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 8])
    parser.add_argument("--repeats", type=int, default=3, help="timed parallel solves (3)")
    parser.add_argument(
        "--sequential-repeats", type=int, default=1, help="timed sequential solves (1)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--top-fraction",
        type=lambda v: None if v == "none" else float(v),
        default=DEFAULTS.top_fraction,
        help=f"top fraction, or none (default {DEFAULTS.top_fraction})",
    )
    parser.add_argument(
        "--tail",
        type=int,
        default=DEFAULTS.tail,
        help=f"clusters per image below which the exact greedy finishes it, 0 = none "
        f"({DEFAULTS.tail})",
    )
    parser.add_argument(
        "--tile",
        type=int,
        default=DEFAULTS.tile,
        help=f"tile of the greedy pre-pass, 0 = none ({DEFAULTS.tile})",
    )
    parser.add_argument(
        "--refine", type=int, default=0, help="rounds of gpucops.refine after the solve (0)"
    )
    parser.add_argument(
        "--sequential-limit",
        type=int,
        default=256 * 512 * 8,
        help="largest B·H·W for which the sequential reference is timed",
    )
    parser.add_argument(
        "--max-entries",
        type=int,
        default=1024 * 2048 * 8 * 19,
        help="skip problems with more B·H·W·K class costs (memory)",
    )
    parser.add_argument("--json", help="also write the records as JSON here")
    args = parser.parse_args(argv)
    warm_up_solvers(args.device)
    records = run(args)
    headers = [
        "size",
        "K",
        "B",
        "parallel s/img (min–max)",
        "rounds",
        "sequential s/img (min–max)",
        "speed-up",
        "quality min",
        "quality mean",
    ]
    rows = [
        [
            r["size"],
            r["K"],
            r["batch"],
            _per_image(r, "parallel_s"),
            r["rounds"],
            _per_image(r, "sequential_s") if "sequential_s" in r else "—",
            f"{r['speedup']:.1f}" if "speedup" in r else "—",
            f"{r['quality_min']:.4f}" if "quality_min" in r else "—",
            f"{r['quality_mean']:.4f}" if "quality_mean" in r else "—",
        ]
        for r in records
    ]
    print()
    print(format_table(headers, rows))
    write_json(args.json, records, indent=1)
    return records


if __name__ == "__main__":
    main()
