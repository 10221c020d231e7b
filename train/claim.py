"""The paper's central claim on a CPU, against a compute-matched control (issue 20).

Pre-registered protocol (written before the final run; ``PROTOCOL`` holds the numbers):

* Seeds 0–5. Seed s has its own synthetic data (``<runs>/seed<s>/data``: 128 training scenes
  drawn from data seed s, 64 validation scenes from data seed s + 1, 128×256 pixels), its own
  initialisation, batch order, augmentation, dropout and λ draws.
* Pre-training (``configs/synthetic_tiny.yaml``, warm-up-poly schedule over 600 steps) is
  validated every 200 steps on the 64 validation scenes; it stops at the first check from step
  400 on whose PQ is not at least 0.01 above the best earlier check (the plateau), at the latest
  at step 600. That step's checkpoint is the one start of all three arms.
* Three arms of 50 steps each, batch 4, the same batches in the same order (same seed):
  (a) ``control``: continued pre-training (the pre-training losses, the whole network, base LR
  1e-3, warm-up 10, poly over the 50 steps); (b) ``solver``: the paper's fine-tuning through
  the AMWC solver with the PQ surrogate (``configs/synthetic_tiny_finetune.yaml``: frozen
  backbone, decoders and batch norms, per-part LR divisions, cost dropout 0.1, N = 5, λ ∈
  [1, 5000] as the paper's Cityscapes runs); (c) ``ablation``: supplementary A.3 — node L1 and
  edge F1 on the AMWC's class and cut labels through the same solver, otherwise as (b).
* Every arm (and the pre-trained start) is evaluated on the 64 validation scenes: PQ, PQ_th,
  PQ_st, SQ, RQ at the resolution the model predicts (stride-4 grid against the stride-4 ground
  truth, as the trainer validates); Table 8: the stride-4 labels upsampled ×4 and the AMWC solved
  at full resolution, both against the full-resolution ground truth; Table 9: the semantic
  oracle (ground-truth class costs, −100 for the true class and 0 for the others, void pixels
  keep the network's, with the network's edge costs) on the stride-4 grid.
* Reported: per-arm means; paired per-seed differences (solver − control), (solver − ablation)
  with mean, 95 % t interval (scipy.stats.t) and seeds improved. The claim holds here if the
  solver arm beats the control on at least 5 of 6 seeds with the interval above zero.

Every process runs on one thread (``OMP_NUM_THREADS=1``, set here before torch loads, and the
trainer's ``cpu_threads``), which also makes the numbers independent of the machine's thread
count; three seeds run at a time (``--jobs``).

Revised once, before any result: the first registration had pre-training up to 1200 steps and 100
steps per arm; on the day of the run the 2-core machine carried a load of about 6 (other jobs), a
pre-training step took 1.6 s instead of 0.4 s, and that protocol would have needed about 3 hours.

Writes ``train/results/claim.json``, ``train/results/claim.png`` and prints the Markdown table of
``train/README.md``.

    .venv/bin/python train/claim.py    # the experiment (49 min on a busy 2-core machine)
"""

from __future__ import annotations

import os

os.environ["OMP_NUM_THREADS"] = "1"  # before torch: every thread pool this process makes

# isort: split
import argparse
import dataclasses
import hashlib
import json
import statistics
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path

import torch
import torch.nn.functional as F
from scipy import stats

from gpucops._openmp import threads
from gpucops.checkpoint import load_checkpoint
from gpucops.data import CityscapesPanoptic, panoptic_segments
from gpucops.inference import build_problem, solve_problem
from gpucops.metrics import PanopticQuality
from gpucops.trainer import TrainConfig, TrainingModule, train

HERE = Path(__file__).resolve().parent

PROTOCOL = {
    "seeds": [0, 1, 2, 3, 4, 5],
    "train_images": 128,
    "validation_images": 64,
    "check_every": 200,
    "min_steps": 400,
    "max_steps": 600,
    "plateau_gain": 0.01,
    "steps_per_arm": 50,
    "lambda_range": [1.0, 5000.0],
}
ARMS = ("control", "solver", "ablation")
ORACLE_COST = 100.0  # |node cost| of the true class in the semantic oracle


def _config(path: str | Path, seed: int, folder: Path, protocol: dict, **keys) -> TrainConfig:
    return dataclasses.replace(
        TrainConfig.from_yaml(path), seed=seed, data_root=str(folder / "data"),
        synthetic_images=(protocol["train_images"], protocol["validation_images"]),
        keep_snapshots=0, overlay_images=0, cpu_threads=1, **keys,
    )  # fmt: skip


def pretrain_to_plateau(seed: int, folder: Path, args: argparse.Namespace) -> tuple[Path, list]:
    """Pre-train in chunks of ``check_every`` steps until the plateau rule stops it; returns
    the checkpoint and the ``[step, PQ]`` history."""
    protocol = args.protocol
    every = protocol["check_every"]
    config = _config(
        args.pretrain, seed, folder, protocol, output_dir=str(folder / "pretrain"),
        steps=protocol["max_steps"], checkpoint_every=every, validate_every=every,
    )  # fmt: skip
    history: list[list[float]] = []
    for step in range(every, protocol["max_steps"] + 1, every):
        pq = train(config, resume=step > every, stop_at=step)["validation"]["All"]["pq"]
        best = max((h[1] for h in history), default=-1.0)
        history.append([step, pq])
        if step >= protocol["min_steps"] and pq < best + protocol["plateau_gain"]:
            break
    return folder / "pretrain" / "checkpoint.pt", history


def arm_config(arm: str, seed: int, folder: Path, start: Path, args) -> TrainConfig:
    """The config of one arm, from the shared checkpoint ``start``."""
    protocol, steps = args.protocol, args.protocol["steps_per_arm"]
    common = dict(
        output_dir=str(folder / arm), init_checkpoint=str(start), steps=steps,
        checkpoint_every=steps, validate_every=steps,
    )  # fmt: skip
    if arm == "control":
        return _config(args.pretrain, seed, folder, protocol, **common)
    loss = "pq_surrogate" if arm == "solver" else "separate"
    return _config(
        args.finetune, seed, folder, protocol, finetune_loss=loss,
        lambda_range=tuple(protocol["lambda_range"]), **common,
    )  # fmt: skip


def _metric(partitionable: torch.Tensor) -> PanopticQuality:
    return PanopticQuality({k: bool(t) for k, t in enumerate(partitionable.tolist())})


def _update(metric: PanopticQuality, truth: tuple, predicted: tuple, categories: list) -> None:
    metric.update(
        *panoptic_segments(*truth, categories), *panoptic_segments(*predicted, categories)
    )


def _scores(result: dict) -> dict:
    """PQ, PQ_th, PQ_st, SQ, RQ of a :class:`PanopticQuality` result."""
    return {
        "pq": result["All"]["pq"], "pq_th": result["Things"]["pq"],
        "pq_st": result["Stuff"]["pq"], "sq": result["All"]["sq"], "rq": result["All"]["rq"],
    }  # fmt: skip


def oracle_costs(node_costs: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Table 9's semantic oracle: −ORACLE_COST for the ground-truth class, 0 for the others;
    void pixels (class −1) keep the network's costs."""
    truth = -ORACLE_COST * F.one_hot(classes.clamp(min=0), node_costs.shape[1])
    truth = truth.permute(0, 3, 1, 2).to(node_costs.dtype)
    return torch.where((classes >= 0).unsqueeze(1), truth, node_costs)


@torch.no_grad()
def evaluate(module: TrainingModule, grid_set, full_set) -> dict:
    """The arm's scores: ``stride4`` (the model's grid), ``upsampled`` and ``full`` (Table 8,
    full-resolution ground truth) and ``oracle`` (Table 9, stride-4 grid)."""
    module.eval()
    layer = module.layer
    partitionable = layer.partitionable.cpu()
    categories = list(range(len(partitionable)))
    metrics = {name: _metric(partitionable) for name in ("stride4", "upsampled", "full", "oracle")}
    solve_grid = layer.perturbation(None, 0).solve  # as the trainer validates
    for index in range(len(grid_set)):
        grid, full = grid_set[index], full_set[index]
        semantic, affinity = module.net(grid["image"][None])
        node, edge = layer.costs(semantic.float(), affinity.float())
        grid_truth = (grid["classes"], grid["segments"])
        full_truth = (full["classes"], full["segments"])
        labelings = {
            "stride4": solve_grid(node, edge),
            "oracle": solve_grid(oracle_costs(node, grid["classes"][None]), edge),
        }
        for name, high in (("upsampled", False), ("full", True)):
            problem = build_problem(
                node, edge, partitionable, layer.distances, full["classes"].shape, high
            )
            labelings[name] = solve_problem(problem)
        for name, labeling in labelings.items():
            truth = full_truth if name in ("upsampled", "full") else grid_truth
            _update(metrics[name], truth, (labeling.classes[0], labeling.segments[0]), categories)
    return {name: _scores(metric.compute()) for name, metric in metrics.items()}


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def run_seed(seed: int, args: argparse.Namespace) -> dict:
    """Pre-train seed ``seed`` to its plateau, run the three arms from that checkpoint and
    evaluate the start and every arm."""
    torch.set_num_threads(1)
    folder = Path(args.runs) / f"seed{seed}"
    saved = folder / "record.json"
    if saved.is_file():  # a finished seed of an interrupted run: kept, not recomputed
        return json.loads(saved.read_text())
    start, history = pretrain_to_plateau(seed, folder, args)
    record: dict = {"seed": seed, "pretrain_history": history, "start": _digest(start)}
    with threads(1):
        sets = _evaluation_sets(folder / "data", args)
        pretrained = TrainingModule(arm_config("control", seed, folder, start, args), sets[2])
        pretrained.load_state_dict(load_checkpoint(start)["module"])
        record["pretrained"] = evaluate(pretrained, *sets[:2])
    for arm in ARMS:
        config = arm_config(arm, seed, folder, start, args)
        module = train(config)["module"]
        with threads(1):
            scores = evaluate(module, *sets[:2])
        record[arm] = {**scores["stride4"], **{k: v for k, v in scores.items() if k != "stride4"},
                       "init_checkpoint": _digest(Path(config.init_checkpoint))}  # fmt: skip
    record["pretrained"] = {**record["pretrained"]["stride4"], **{
        k: v for k, v in record["pretrained"].items() if k != "stride4"}}  # fmt: skip
    print(json.dumps({"seed": seed, **{a: record[a]["pq"] for a in ("pretrained", *ARMS)}}),
          flush=True)  # fmt: skip
    saved.write_text(json.dumps(record, indent=2) + "\n")
    return record


def _evaluation_sets(root: Path, args: argparse.Namespace):
    """The validation scenes on the stride-4 grid and at full resolution, and partitionable."""
    distances = TrainConfig.from_yaml(args.pretrain).distances
    grid = CityscapesPanoptic(root, "val", distances=distances)
    full = CityscapesPanoptic(root, "val", distances=distances, stride=1)
    return grid, full, grid.partitionable


def paired(records: list[dict], arm: str, other: str, key: str) -> dict:
    """Mean, 95 % t interval, paired t-test p and seeds improved of ``arm − other``."""
    differences = [r[arm][key] - r[other][key] for r in records]
    n = len(differences)
    mean = statistics.fmean(differences)
    if n < 2:
        return {"mean": mean, "low": None, "high": None, "p": None, "improved": int(mean > 0),
                "n": n, "differences": differences}  # fmt: skip
    half = stats.t.ppf(0.975, n - 1) * statistics.stdev(differences) / n**0.5
    p = float(stats.ttest_1samp(differences, 0.0).pvalue) if half > 0 else None
    return {"mean": mean, "low": mean - half, "high": mean + half, "p": p,
            "improved": sum(d > 0 for d in differences), "n": n,
            "differences": differences}  # fmt: skip


COLUMNS = ("pq", "pq_th", "pq_st", "sq", "rq")
VIEWS = {"upsampled": "Table 8, stride 4 upsampled", "full": "Table 8, full resolution",
         "oracle": "Table 9, semantic oracle"}  # fmt: skip


def summary(records: list[dict]) -> dict:
    arms = ("pretrained", *ARMS)
    means = {a: {k: statistics.fmean(r[a][k] for r in records) for k in COLUMNS} for a in arms}
    for view in VIEWS:
        for a in arms:
            means[a][view] = {k: statistics.fmean(r[a][view][k] for r in records) for k in COLUMNS}
    comparisons = {
        f"{a} - {b}": {k: paired(records, a, b, k) for k in ("pq", "pq_th", "pq_st")}
        for a, b in (("solver", "control"), ("solver", "ablation"), ("solver", "pretrained"),
                     ("control", "pretrained"))
    }  # fmt: skip
    return {"means": means, "paired": comparisons}


def markdown(result: dict) -> str:
    """The README's tables: per-arm means and the paired differences."""
    means, lines = result["summary"]["means"], []
    lines += ["| arm | PQ | PQ_th | PQ_st | SQ | RQ | PQ ×4 up | PQ full res | PQ oracle |",
              "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]  # fmt: skip
    for arm, m in means.items():
        cells = [f"{m[k]:.3f}" for k in COLUMNS] + [f"{m[v]['pq']:.3f}" for v in VIEWS]
        lines.append(f"| {arm} | " + " | ".join(cells) + " |")
    lines += ["", "| difference | metric | mean | 95 % interval | p | seeds improved |",
              "| --- | --- | ---: | --- | ---: | ---: |"]  # fmt: skip
    for name, per_key in result["summary"]["paired"].items():
        for key, d in per_key.items():
            interval = "—" if d["low"] is None else f"[{d['low']:+.3f}, {d['high']:+.3f}]"
            p = "—" if d["p"] is None else f"{d['p']:.3f}"
            lines.append(f"| {name} | {key} | {d['mean']:+.3f} | {interval} | {p} | "
                         f"{d['improved']} of {d['n']} |")  # fmt: skip
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    """Left: per-seed PQ of the start and the three arms, one line per seed. Right: the paired
    differences per seed (dots) with their mean and 95 % interval (bar). matplotlib comes with
    imgviz, a dependency."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    arms = ("pretrained", *ARMS)
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for record in result["seeds"]:
        left.plot(arms, [record[a]["pq"] for a in arms], marker="o", alpha=0.7,
                  label=f"seed {record['seed']}")  # fmt: skip
    left.set_ylabel(f"validation PQ ({result['validation_images']} images, stride-4 grid)")
    left.set_title(f"{result['steps_per_arm']} steps per arm from one checkpoint per seed")
    left.legend(fontsize=7)
    names = ("solver - control", "solver - ablation")
    for x, name in enumerate(names):
        d = result["summary"]["paired"][name]["pq"]
        right.scatter([x] * d["n"], d["differences"], alpha=0.7)
        if d["low"] is not None:
            bar = [[d["mean"] - d["low"]], [d["high"] - d["mean"]]]
            right.errorbar(x + 0.15, d["mean"], yerr=bar, fmt="s", color="black", capsize=4)
    right.axhline(0, color="grey", linewidth=0.8)
    right.set_xticks(range(len(names)), names)
    right.set_ylabel("paired PQ difference")
    right.set_title("dots: seeds; square and bar: mean, 95 % t interval")
    right.set_xlim(-0.5, len(names) - 0.5)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=PROTOCOL["seeds"])
    parser.add_argument("--jobs", type=int, default=3, help="seeds run at a time")
    parser.add_argument("--pretrain", default=str(HERE / "configs/synthetic_tiny.yaml"))
    parser.add_argument("--finetune", default=str(HERE / "configs/synthetic_tiny_finetune.yaml"))
    parser.add_argument("--runs", default="runs/claim",
                        help="a fresh folder, or an interrupted run's (its finished seeds are "
                        "kept)")  # fmt: skip
    parser.add_argument("--output", default=str(HERE / "results/claim.json"))
    parser.add_argument("--protocol", type=json.loads, default={},
                        help="JSON overrides of PROTOCOL (tests only: the registered numbers "
                        "are the defaults)")  # fmt: skip
    args = parser.parse_args(argv)
    args.protocol = {**PROTOCOL, **args.protocol}
    if args.jobs > 1 and len(args.seeds) > 1:
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            records = list(pool.map(run_seed, args.seeds, [args] * len(args.seeds)))
    else:
        records = [run_seed(seed, args) for seed in args.seeds]
    result = {
        "protocol": args.protocol,
        "validation_images": args.protocol["validation_images"],
        "steps_per_arm": args.protocol["steps_per_arm"],
        "seeds": records,
    }
    result["summary"] = summary(records)
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(result, indent=2) + "\n")
    plot(result, output.with_suffix(".png"))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
