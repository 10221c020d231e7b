"""The ``gpucops`` command line (also ``python -m gpucops``).

    gpucops demo       the whole pipeline on embedded data, pictures and a summary table
    gpucops predict    panoptic predictions for a folder of images with a trained checkpoint
    gpucops evaluate   PQ/SQ/RQ, mIoU and AP of COCO-panoptic prediction files
    gpucops bench      inference timings: model, solver backends, stride 4 vs full resolution

Each command lives in its own module (``HELP``, ``add_arguments``, ``run``; its docstring is
its ``--help`` description). An error in the inputs ends the
command with one line on stderr and exit code 1 (argparse's own usage errors: 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import bench, demo, evaluate, predict
from .table import format_table, markdown_table

__all__ = ["build_parser", "format_table", "main", "markdown_table"]

COMMANDS = (demo, predict, evaluate, bench)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpucops",
        description="GPU-accelerated, fully differentiable COPS panoptic segmentation.",
        epilog="'gpucops COMMAND --help' explains each command's options.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        name = command.__name__.rsplit(".", 1)[-1]
        sub = commands.add_parser(
            name, help=command.HELP, description=command.__doc__.replace("``", ""),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )  # fmt: skip
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        args.run(args)
    except (ValueError, FileNotFoundError, NotADirectoryError, PermissionError) as error:
        print(f"gpucops {args.command}: error: {error}", file=sys.stderr)
        return 1
    return 0
