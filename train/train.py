"""Train COPS: ``python train/train.py --config train/configs/synthetic_tiny.yaml`` in one
process, or ``torchrun --nproc_per_node=G train/train.py --config …`` on G GPUs (or CPU
processes with gloo). ``--resume`` continues the run in the config's output folder exactly;
``--set key=value`` overrides config keys (YAML values). An error in the config, the data or a
checkpoint ends the run with one line (``--debug``: the traceback)."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from gpucops.cli import report_errors
from gpucops.trainer import TrainConfig, train


def run(args: argparse.Namespace) -> None:
    overrides = {}
    for item in args.set:
        key, equals, value = item.partition("=")
        if not equals or not key:
            raise ValueError(f"--set takes KEY=VALUE, got {item!r}")
        try:
            overrides[key] = yaml.safe_load(value)
        except yaml.YAMLError as error:
            raise ValueError(f"--set {key}: {value!r} is not a YAML value ({error})") from None
    result = train(TrainConfig.from_yaml(args.config, overrides), resume=args.resume)
    if result["rank"] != 0:  # one summary per run, not one per torchrun process
        return
    print(json.dumps({"loss": result["loss"], "step": result["step"],
                      "val_pq": result["validation"].get("All", {}).get("pq")}))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a YAML file of TrainConfig keys")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    args = parser.parse_args(argv)
    return report_errors("train.py", lambda: run(args), args.debug)


if __name__ == "__main__":
    sys.exit(main())
