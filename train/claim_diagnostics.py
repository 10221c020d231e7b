"""Post-hoc look at a finished ``train/claim.py`` run (not part of its registered protocol): per
arm, the training loss over the first and last 10 steps, how far each part of the network moved
from the shared start (relative L2 norm of the change), and the AMWC cost scalars.

    .venv/bin/python train/claim_diagnostics.py runs/claim
"""

from __future__ import annotations

import argparse
import csv
import statistics
from pathlib import Path

from gpucops.checkpoint import load_checkpoint

PARTS = ("net.backbone", "net.semantic_head", "net.semantic_predictor", "net.affinity_head",
         "net.classifiers")  # fmt: skip
ARMS = ("control", "solver", "ablation")


def relative_change(start: dict, end: dict, prefix: str) -> float:
    """‖end − start‖ / ‖start‖ over the trainable tensors under ``prefix``."""
    keys = [k for k in start if k.startswith(prefix) and start[k].is_floating_point()
            and "running" not in k]  # fmt: skip
    change = sum(float((end[k] - start[k]).norm() ** 2) for k in keys) ** 0.5
    size = sum(float(start[k].norm() ** 2) for k in keys) ** 0.5
    return change / size if size else 0.0


def arm_summary(folder: Path, start: dict) -> dict:
    with open(folder / "log.csv", newline="") as handle:
        losses = [float(row["loss"]) for row in csv.DictReader(handle)]
    end = load_checkpoint(folder / "checkpoint.pt")["module"]
    return {
        "loss_first_10": statistics.fmean(losses[:10]),
        "loss_last_10": statistics.fmean(losses[-10:]),
        "relative_change": {p.removeprefix("net."): relative_change(start, end, p) for p in PARTS},
        "cost_scalars": {k.removeprefix("layer."): end[k].tolist() for k in end
                         if k.startswith("layer.") and end[k].is_floating_point()},
    }  # fmt: skip


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", help="the --runs folder of train/claim.py")
    args = parser.parse_args(argv)
    report = {}
    for seed in sorted(Path(args.runs).glob("seed*")):
        if not (seed / "record.json").is_file():  # an unfinished seed
            continue
        start = load_checkpoint(seed / "pretrain" / "checkpoint.pt")["module"]
        report[seed.name] = {arm: arm_summary(seed / arm, start) for arm in ARMS}
    for arm in ARMS:
        rows = [r[arm] for r in report.values()]
        fell = sum(r["loss_last_10"] < r["loss_first_10"] for r in rows)
        moved = {p: statistics.fmean(r["relative_change"][p] for r in rows)
                 for p in rows[0]["relative_change"]} if rows else {}  # fmt: skip
        print(f"{arm}: training loss fell on {fell} of {len(rows)} seeds; mean relative change "
              + ", ".join(f"{p} {100 * v:.2f} %" for p, v in moved.items()))  # fmt: skip
    return report


if __name__ == "__main__":
    main()
