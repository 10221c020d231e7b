"""Where the exact greedy should take over from the rounds (issue 24, part 5): for each ``tail``
(clusters per image at or below which the sequential greedy finishes an image), the rounds, the
merges the tail made, the quality ratio (trivial − parallel) / (trivial − sequential) against the
sequential reference in the same run (where it finishes in reasonable time), the objective's
change against ``tail = 0`` (rounds to the end), and the parallel time (median of ``--repeats``
after a warm-up, with the min–max range).

    .venv/bin/python benchmarks/tail.py
    .venv/bin/python benchmarks/tail.py --sizes 256x512 --seeds 0 1 2 3 --tails 0 256 1024 4096
"""

from __future__ import annotations

import argparse

import gpucops

# isort: split
from gpucops.cli import report_records
from gpucops.objectives import trivial_objective
from gpucops.synthetic import make_problem
from gpucops.timing import Timing, median_time

CITYSCAPES_DISTANCES = (1, 4, 16, 32, 64)


def run(args: argparse.Namespace) -> list[dict]:
    records = []
    for size in args.sizes:
        height, width = (int(v) for v in size.split("x"))
        for seed in args.seeds:
            p = make_problem(1, height, width, args.classes, CITYSCAPES_DISTANCES, seed=seed)
            problem = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
            trivial = trivial_objective(*problem).item()
            sequential = None
            if height * width <= args.sequential_limit:
                sequential = gpucops.solve(*problem, method="sequential").objective.item()
            rounds_only = None
            for tail in args.tails:
                labeling, timing = median_time(
                    lambda t=tail, a=problem: gpucops.solve(*a, tail=t), "cpu", args.repeats
                )
                objective = labeling.objective.item()
                rounds_only = objective if tail == 0 else rounds_only
                records.append({
                    "size": size, "seed": seed, "tail": tail, **timing.record("seconds"),
                    "rounds": labeling.info["rounds"], "tail_merges": labeling.info["tail_merges"],
                    "objective": objective,
                    "quality": None if sequential is None
                    else (trivial - objective) / (trivial - sequential),
                    "gain_over_rounds": None if rounds_only is None
                    else (rounds_only - objective) / (trivial - rounds_only),
                })  # fmt: skip
                print(*_row(records[-1]), flush=True)
    return records


HEADER = ["size", "seed", "tail", "rounds", "tail merges", "quality", "vs tail 0", "seconds"]


def _row(record: dict) -> list:
    quality = "—" if record["quality"] is None else f"{record['quality']:.5f}"
    gain = "—" if record["gain_over_rounds"] is None else f"{record['gain_over_rounds']:+.2e}"
    return [record["size"], record["seed"], record["tail"], record["rounds"],
            record["tail_merges"], quality, gain,
            Timing(tuple(record["seconds_times"])).text()]  # fmt: skip


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["128x256", "256x512", "1024x2048"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--tails", nargs="+", type=int, default=[0, 256, 1024, 4096])
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--sequential-limit", type=int, default=256 * 512,
        help="largest grid (pixels) on which the sequential reference runs",
    )  # fmt: skip
    parser.add_argument("--json", help="write the records here")
    args = parser.parse_args(argv)
    if args.tails[0] != 0:
        parser.error("--tails must start with 0 (the rounds-only reference)")
    return report_records(run(args), HEADER, _row, args.json)


if __name__ == "__main__":
    main()
