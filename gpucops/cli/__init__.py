"""The ``gpucops`` command line (also ``python -m gpucops``).

    gpucops demo       the whole pipeline on embedded data, pictures and a summary table
    gpucops predict    panoptic predictions for a folder of images with a trained checkpoint
    gpucops evaluate   PQ/SQ/RQ, mIoU and AP of prediction files, or of a checkpoint on a data set
    gpucops bench      inference timings: model, solver backends, stride 4 vs full resolution
    gpucops convert    published weights (detectron2 .pkl, COPS checkpoints) into gpucops names

Each command lives in its own module (``HELP``, ``add_arguments``, ``run``; its docstring is
its ``--help`` description). An error in the inputs (or a file, or memory) ends the
command with one line on stderr and exit code 1 (argparse's own usage errors: 2); ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

import torch

from . import bench, convert, demo, evaluate, predict
from .table import format_table, markdown_table, report_records, write_json

__all__ = [
    "build_parser",
    "format_table",
    "main",
    "markdown_table",
    "report_errors",
    "report_records",
    "write_json",
]

COMMANDS = (demo, predict, evaluate, bench, convert)
# what a user's input, files or machine cause (OSError: missing, unreadable, unwritable files);
# anything else is a defect of gpucops and keeps its traceback
USER_ERRORS = (ValueError, OSError, MemoryError, torch.OutOfMemoryError)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpucops",
        description="GPU-accelerated, fully differentiable COPS panoptic segmentation.",
        epilog="'gpucops COMMAND --help' explains each command's options.",
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
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


def report_errors(prog: str, command: Callable[[], object], debug: bool = False) -> int:
    """Run ``command``; a user's error (:data:`USER_ERRORS`) becomes one line ``prog: error: …``
    on stderr and exit code 1 (with ``debug``, it is raised). Returns the exit code."""
    try:
        command()
    except USER_ERRORS as error:
        if debug:
            raise
        print(f"{prog}: error: {error}", file=sys.stderr)
        return 1
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return report_errors(f"gpucops {args.command}", lambda: args.run(args), args.debug)
