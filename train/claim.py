"""The paper's central claim on a CPU: for each seed, pre-train the tiny model on the synthetic
street scenes, fine-tune it through the AMWC solver with the PQ surrogate, and compare the
validation PQ before and after. Writes ``train/results/synthetic_claim.json``: a list of
``{"seed", "baseline_pq", "finetuned_pq"}``.

    .venv/bin/python train/claim.py --seeds 0 1 2 3 4 5
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from gpucops.trainer import TrainConfig, train

HERE = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4, 5])
    parser.add_argument("--pretrain", default=str(HERE / "configs/synthetic_tiny.yaml"))
    parser.add_argument("--finetune", default=str(HERE / "configs/synthetic_tiny_finetune.yaml"))
    parser.add_argument("--runs", default="runs/claim")
    parser.add_argument("--output", default=str(HERE / "results/synthetic_claim.json"))
    args = parser.parse_args(argv)
    records = []
    for seed in args.seeds:
        folder = Path(args.runs) / f"seed{seed}"
        pre = dataclasses.replace(
            TrainConfig.from_yaml(args.pretrain), seed=seed, output_dir=str(folder / "pretrain")
        )
        baseline = train(pre)["validation"]["All"]["pq"]
        fine = dataclasses.replace(
            TrainConfig.from_yaml(args.finetune), seed=seed, output_dir=str(folder / "finetune"),
            init_checkpoint=str(folder / "pretrain" / "checkpoint.pt"),
        )  # fmt: skip
        finetuned = train(fine)["validation"]["All"]["pq"]
        records.append({"seed": seed, "baseline_pq": baseline, "finetuned_pq": finetuned})
        print(json.dumps(records[-1]), flush=True)
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(records, indent=2) + "\n")
    return records


if __name__ == "__main__":
    main()
