"""``gpucops evaluate``: PQ/SQ/RQ (all, things, stuff, per class), mIoU and mask AP of
COCO-panoptic prediction files against ground-truth files — the inputs of cityscapesscripts'
panoptic evaluation (``--gt-json``/``--gt-dir``: e.g. ``gtFine/cityscapes_panoptic_val.json``
and its PNG folder; ``--pred-json``/``--pred-dir``: what ``gpucops predict`` writes). PQ equals
cityscapesscripts' to 1e-6 (tested); AP is pycocotools' ``segm`` AP of the thing segments,
scored by their ``score`` in ``segments_info`` (1 where absent). Prints tables, writes JSON.

``--checkpoint CKPT --data ROOT [--split val]`` does both steps on a data set in the Cityscapes
layout: ``gpucops predict`` on ``ROOT/leftImg8bit/<split>`` (into ``--predictions``), then this
evaluation against ``ROOT/gtFine/cityscapes_panoptic_<split>[_trainId].json`` (the one whose
category ids are the checkpoint's), and the Cityscapes instance-level AP (the paper's AP:
cityscapesscripts' evaluation against ``gtFine/<split>/*/*_gtFine_instanceIds.png``).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from ..data import read_panoptic_json, read_panoptic_png
from ..data.panoptic_files import file_in
from ..metrics import cityscapes_ap, evaluate_panoptic
from . import predict
from .table import format_table

__all__ = ["HELP", "add_arguments", "run", "summary_tables"]


def _percent(value: float | None) -> str:
    """A score in percent; ``—`` for a class absent from the ground truth and the prediction
    (None: no score, unlike 0.0)."""
    return "—" if value is None else f"{100 * value:.1f}"


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
    # mIoU of the panoptic output's category maps (void segments count as misses) and, where
    # the semantic maps were given, of the semantic head's argmax (the official Cityscapes one)
    ious = [("IoU", "miou", "panoptic output")]
    if "miou_semantic" in result:
        ious.insert(0, ("IoU sem", "miou_semantic", "semantic argmax, the Cityscapes definition"))
    per_class = format_table(
        ["id", "class", "PQ", "SQ", "RQ", *[column for column, _, _ in ious]],
        [
            [category, name, *map(_percent, (scores["pq"], scores["sq"], scores["rq"])),
             *[_percent(result[key]["per_class"][category]) for _, key, _ in ious]]
            for category, name in result["categories"].items()
            for scores in [result["pq"]["per_class"][category]]
        ],
    )  # fmt: skip
    means = "   ".join(f"mIoU {_percent(result[key]['miou'])} ({label})" for _, key, label in ious)
    lines = [overall, "", per_class, "", means]
    if "ap" in result:
        ap = result["ap"]
        lines[-1] += f"   AP {_percent(ap['ap'])}  AP50 {_percent(ap['ap50'])} (COCO masks)"
    if "cityscapes_ap" in result:
        ap = result["cityscapes_ap"]
        lines[-1] += f"   AP {_percent(ap['ap'])}  AP50 {_percent(ap['ap50'])} (Cityscapes)"
    lines[-1] += f"   ({result['images']} images)"
    return "\n".join(lines)


_FILES = ("gt_json", "gt_dir", "pred_json", "pred_dir")


def _predict_split(args: argparse.Namespace) -> tuple[Path, ...]:
    """``gpucops predict`` on ``--data``'s ``leftImg8bit/<split>``; the evaluation's inputs:
    the ground truth whose category ids are the checkpoint's, the predictions, the semantic
    maps."""
    root = Path(args.data)
    images = root / "leftImg8bit" / args.split
    if not images.is_dir():
        raise NotADirectoryError(f"--data {root} has no leftImg8bit/{args.split} folder")
    candidates = [
        root / "gtFine" / f"cityscapes_panoptic_{args.split}{suffix}.json"
        for suffix in ("", "_trainId")
    ]  # fmt: skip
    if not any(path.is_file() for path in candidates):
        raise FileNotFoundError(
            f"--data {root} has no gtFine/cityscapes_panoptic_{args.split}[_trainId].json "
            "(cityscapesscripts' createPanopticImgs writes it)"
        )
    checkpoint = Path(args.checkpoint)
    out = Path(args.predictions or checkpoint.with_name(f"{checkpoint.stem}_{args.split}"))
    predict.run(argparse.Namespace(
        checkpoint=args.checkpoint, images=str(images), out=str(out), categories=None,
        no_overlays=True, gt_json=None, gt_dir=None, **{key: getattr(args, key) for key in (
            "full_resolution", "device", "batch_size", "thing_area", "stuff_area")},
    ))  # fmt: skip
    pred_json = out / "panoptic.json"
    ids = {c["id"] for c in read_panoptic_json(pred_json)["categories"]}
    for gt_json in candidates:
        if (
            gt_json.is_file()
            and {c["id"] for c in read_panoptic_json(gt_json)["categories"]} == ids
        ):
            return gt_json, gt_json.with_suffix(""), pred_json, out / "panoptic", out / "semantic"
    raise ValueError(
        f"--data {root}: no gtFine/cityscapes_panoptic_{args.split}[_trainId].json has the "
        f"checkpoint's category ids {sorted(ids)}"
    )


def cityscapes_instance_ap(root: Path, split: str, gt_json: Path, pred_json: Path,
                           pred_dir: Path) -> dict:  # fmt: skip
    """Cityscapes instance-level AP of the thing segments of ``pred_json`` (scored by their
    ``score``) against ``root/gtFine/<split>/<city>/<image id>_gtFine_instanceIds.png``; category
    ids are mapped to Cityscapes label ids when ``gt_json`` is the train-id ground truth."""
    from cityscapesscripts.helpers.labels import trainId2label

    instance_files = {
        path.name.removesuffix("_gtFine_instanceIds.png"): path
        for path in (root / "gtFine" / split).glob("*/*_gtFine_instanceIds.png")
    }
    document = read_panoptic_json(pred_json)
    things = {c["id"] for c in document["categories"] if c.get("isthing")}
    label_id = (
        (lambda category: trainId2label[category].id)
        if gt_json.name.endswith("_trainId.json") else (lambda category: category)
    )  # fmt: skip
    files, predictions = [], []
    for annotation in document["annotations"]:
        name = str(annotation["image_id"])
        if name not in instance_files:
            raise FileNotFoundError(
                f"--data {root} has no gtFine/{split}/*/{name}_gtFine_instanceIds.png "
                "(the Cityscapes AP needs the instance ground truth)"
            )
        ids = read_panoptic_png(file_in(pred_dir, annotation["file_name"], pred_json))
        files.append(instance_files[name])
        predictions.append([
            (label_id(s["category_id"]), ids == s["id"], float(s.get("score", 1.0)))
            for s in annotation["segments_info"]
            if s["category_id"] in things and not s.get("iscrowd")
        ])  # fmt: skip
    with tempfile.TemporaryDirectory() as workdir:
        return cityscapes_ap(files, predictions, workdir)


def run(args: argparse.Namespace) -> None:
    if args.checkpoint:
        if args.data is None:
            raise ValueError("--checkpoint needs --data (a data set in the Cityscapes layout)")
        (args.gt_json, args.gt_dir, args.pred_json, args.pred_dir,
         args.pred_semantic_dir) = _predict_split(args)  # fmt: skip
    else:
        missing = [f"--{n.replace('_', '-')}" for n in _FILES if getattr(args, n) is None]
        if missing:
            raise ValueError(f"give {', '.join(missing)} (or --checkpoint and --data)")
    for name in ("gt_dir", "pred_dir", "pred_semantic_dir"):
        if getattr(args, name) is not None and not Path(getattr(args, name)).is_dir():
            raise NotADirectoryError(
                f"--{name.replace('_', '-')} {getattr(args, name)} is not a folder"
            )
    result = evaluate_panoptic(
        args.gt_json, args.gt_dir, args.pred_json, args.pred_dir,
        boundary_ratio=args.boundary_ratio, ap=not args.no_ap, semantic_dir=args.pred_semantic_dir,
    )  # fmt: skip
    if args.checkpoint and not args.no_ap:
        result["cityscapes_ap"] = cityscapes_instance_ap(
            Path(args.data), args.split, Path(args.gt_json), Path(args.pred_json),
            Path(args.pred_dir),
        )  # fmt: skip
    print(summary_tables(result))
    out = (
        Path(args.out)
        if args.out
        else Path(args.pred_json).with_name(Path(args.pred_json).stem + "_evaluation.json")
    )
    out.write_text(json.dumps(result, indent=1, sort_keys=True, default=str))
    print(f"written: {out}")


HELP = "PQ/SQ/RQ, mIoU and AP of COCO-panoptic prediction files, or of a checkpoint on a data set"


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
    files = parser.add_argument_group("prediction files")
    files.add_argument("--gt-json", help="ground-truth panoptic JSON")
    files.add_argument("--gt-dir", help="folder of the ground-truth PNGs")
    files.add_argument("--pred-json", help="predicted panoptic JSON")
    files.add_argument("--pred-dir", help="folder of the predicted PNGs")
    files.add_argument(
        "--pred-semantic-dir",
        help="folder of the semantic head's class maps (predict's semantic/): adds the official "
        "Cityscapes mIoU",
    )
    model = parser.add_argument_group("or a checkpoint on a data set (predict, then evaluate)")
    model.add_argument("--checkpoint", help="checkpoint.pt or best.pt of train/train.py")
    model.add_argument("--data", help="a data set in the Cityscapes layout (leftImg8bit, gtFine)")
    model.add_argument("--split", default="val", help="its split (default: val)")
    model.add_argument(
        "--predictions",
        help="folder for the predictions (default: <checkpoint stem>_<split> beside it)",
    )
    predict.add_inference_arguments(model)
    parser.add_argument(
        "--out", help="result JSON (default: <pred-json stem>_evaluation.json beside it)"
    )
    parser.add_argument(
        "--boundary-ratio", type=_ratio, default=None,
        help="also boundary PQ with bands of this ratio of the image diagonal (e.g. 0.02)",
    )  # fmt: skip
    parser.add_argument(
        "--no-ap", action="store_true", help="skip the mask AP (and --checkpoint's Cityscapes AP)"
    )
