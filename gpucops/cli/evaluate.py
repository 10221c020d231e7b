"""``gpucops evaluate``: PQ/SQ/RQ (all, things, stuff, per class), mIoU and mask AP of
COCO-panoptic prediction files against ground-truth files — the inputs of cityscapesscripts'
panoptic evaluation (``--gt-json``/``--gt-dir``: e.g. ``gtFine/cityscapes_panoptic_val.json``
and its PNG folder; ``--pred-json``/``--pred-dir``: what ``gpucops predict`` writes). PQ equals
cityscapesscripts' to 1e-6 (tested); AP is pycocotools' ``segm`` AP of the thing segments,
scored by their ``score`` in ``segments_info`` (1 where absent). Prints tables, writes JSON.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..metrics import evaluate_panoptic
from .table import format_table

__all__ = ["HELP", "add_arguments", "run", "summary_tables"]


def _percent(value: float) -> str:
    return f"{100 * value:.1f}"


def summary_tables(result: dict) -> str:
    """The overall and per-class tables of an :func:`~gpucops.metrics.evaluate_panoptic` result."""
    kinds = ["pq"] + (["boundary_pq"] if "boundary_pq" in result else [])
    rows = []
    for kind in kinds:
        for part in ("All", "Things", "Stuff"):
            scores = result[kind][part]
            rows.append([kind.replace("_", " ").upper(), part, *map(_percent, (
                scores["pq"], scores["sq"], scores["rq"])), scores["n"]])  # fmt: skip
    overall = format_table(["metric", "classes", "PQ", "SQ", "RQ", "n"], rows)
    per_class = format_table(
        ["id", "class", "PQ", "SQ", "RQ", "IoU"],
        [
            [category, name, *map(_percent, (scores["pq"], scores["sq"], scores["rq"])),
             _percent(result["miou"]["per_class"][category])]
            for category, name in result["categories"].items()
            for scores in [result["pq"]["per_class"][category]]
        ],
    )  # fmt: skip
    lines = [overall, "", per_class, "", f"mIoU {_percent(result['miou']['miou'])}"]
    if "ap" in result:
        ap = result["ap"]
        lines[-1] += f"   AP {_percent(ap['ap'])}  AP50 {_percent(ap['ap50'])}"
    lines[-1] += f"   ({result['images']} images)"
    return "\n".join(lines)


def run(args: argparse.Namespace) -> None:
    for name in ("gt_dir", "pred_dir"):
        if not Path(getattr(args, name)).is_dir():
            raise NotADirectoryError(
                f"--{name.replace('_', '-')} {getattr(args, name)} is not a folder"
            )
    result = evaluate_panoptic(
        args.gt_json, args.gt_dir, args.pred_json, args.pred_dir,
        boundary_ratio=args.boundary_ratio, ap=not args.no_ap,
    )  # fmt: skip
    print(summary_tables(result))
    out = (
        Path(args.out)
        if args.out
        else Path(args.pred_json).with_name(Path(args.pred_json).stem + "_evaluation.json")
    )
    out.write_text(json.dumps(result, indent=1, sort_keys=True, default=str))
    print(f"written: {out}")


HELP = "PQ/SQ/RQ, mIoU and AP of COCO-panoptic prediction files"


def _ratio(text: str) -> float:
    """A fraction in (0, 1), refused at parsing (a percent typed as a ratio would run for
    hours)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"a ratio is a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must lie in (0, 1), e.g. 0.02, got {text}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--gt-json", required=True, help="ground-truth panoptic JSON")
    parser.add_argument("--gt-dir", required=True, help="folder of the ground-truth PNGs")
    parser.add_argument("--pred-json", required=True, help="predicted panoptic JSON")
    parser.add_argument("--pred-dir", required=True, help="folder of the predicted PNGs")
    parser.add_argument(
        "--out", help="result JSON (default: <pred-json stem>_evaluation.json beside it)"
    )
    parser.add_argument(
        "--boundary-ratio", type=_ratio, default=None,
        help="also boundary PQ with bands of this ratio of the image diagonal (e.g. 0.02)",
    )  # fmt: skip
    parser.add_argument("--no-ap", action="store_true", help="skip the mask AP")
