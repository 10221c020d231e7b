"""Train COPS: ``python train/train.py --config train/configs/synthetic_tiny.yaml`` in one
process, or ``torchrun --nproc_per_node=G train/train.py --config …`` on G GPUs (or CPU
processes with gloo). ``--resume`` continues the run in the config's output folder exactly;
``--set key=value`` overrides config keys (YAML values)."""

from __future__ import annotations

import argparse
import json

import yaml

from gpucops.trainer import TrainConfig, train


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", required=True, help="a YAML file of TrainConfig keys")
    parser.add_argument("--resume", action="store_true", help="continue from the checkpoint")
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE")
    args = parser.parse_args(argv)
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = yaml.safe_load(value)
    result = train(TrainConfig.from_yaml(args.config, overrides), resume=args.resume)
    print(json.dumps({"loss": result["loss"], "step": result["step"],
                      "val_pq": result["validation"].get("All", {}).get("pq")}))  # fmt: skip
    return result


if __name__ == "__main__":
    main()
