"""``gpucops bench``: inference timings at stride 4 and at full resolution.

For each image size and batch size: the COPS network (``--model``, random weights, random
images) with its cost kernels; the AMWC solve on the stride-4 grid and on the full-resolution
grid (:func:`gpucops.inference.full_resolution_costs`) — the problems and solves of ``gpucops
predict`` (:func:`gpucops.inference.build_problem`, :func:`gpucops.inference.solve_problem`,
labels at image size) — by the parallel solver on ``--device``
(and on the CPU host build too when that is a GPU); the sequential reference in the same run
where the problem is small enough (``--sequential-limit``); and the whole inference (network,
costs, upsampling, solve, labels at image size). Each time is the median of ``--repeats`` calls
after ``--warmup`` untimed ones (the sequential reference: ``--sequential-repeats``, no warm-up,
its build loaded first), device synchronised, printed with its spread (min–max of the repeats);
peak memory: CUDA's allocator peak per configuration, on a CPU the process's peak resident set
so far.

The solver always gets synthetic street-scene costs of the network's output shape
(:func:`gpucops.synthetic.make_problem`), so its timings do not depend on what an untrained
network happens to output. For comparison, the published COPS (supplementary Table 8, sequential
CPU solver, batch 1): 2 s per image at stride 4, 15 s at full resolution.
"""

from __future__ import annotations

import argparse
import json
import resource
from pathlib import Path

import torch
from tqdm import tqdm

from ..inference import STRIDE, ImageProblem, build_problem, solve_problem, warm_up_solvers
from ..layer import AMWCLayer
from ..model import COPSNet, ModelConfig
from ..objectives import improvement_ratio, trivial_objective
from ..synthetic import class_roles, make_problem
from ..timing import Timing, median_time
from .predict import resolve_device
from .table import format_table

__all__ = ["HELP", "add_arguments", "run"]


def _size(text: str) -> tuple[int, int]:
    try:
        height, width = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"a size is HEIGHTxWIDTH, got {text!r}") from None
    if height < 4 * STRIDE or width < 4 * STRIDE:
        raise argparse.ArgumentTypeError(f"sizes start at {4 * STRIDE}x{4 * STRIDE}, got {text}")
    return height, width


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**10  # KiB on Linux


def _measure(args, device, model, layer, size, batch) -> list[dict]:
    """Every row of one (size, batch)."""
    height, width = size
    grid = (-(-height // STRIDE), -(-width // STRIDE))
    distances = layer.distances
    images = torch.randint(0, 256, (batch, 3, height, width), dtype=torch.uint8, device=device)
    problem = make_problem(batch, *grid, args.classes, distances, seed=0, device=device)

    def network() -> tuple[torch.Tensor, torch.Tensor]:
        semantic, affinity = model(images)  # raw uint8: the network normalises
        return layer.costs(semantic[..., : grid[0], : grid[1]], affinity[..., : grid[0], : grid[1]])

    _, model_time = median_time(network, device, args.repeats, args.warmup)
    rows = []
    for resolution in args.resolutions:
        full = resolution == "full"

        def build(full: bool = full) -> ImageProblem:
            return build_problem(
                problem.node_costs, problem.edge_costs, problem.partitionable, distances, size,
                full,
            )  # fmt: skip

        solved = build()
        labeling, solver_time = median_time(
            lambda p=solved: solve_problem(p), device, args.repeats, args.warmup
        )
        solved_h, solved_w = solved.node_costs.shape[-2:]
        row = {
            "size": f"{height}x{width}", "batch": batch, "resolution": resolution,
            "grid": f"{solved_h}x{solved_w}", "K": args.classes, "device": str(device),
            **model_time.record("model_s"), **solver_time.record("solver_s"),
            "rounds": labeling.info.get("rounds"),
        }  # fmt: skip
        if device.type != "cpu":
            host = solved.to("cpu")
            _, cpu_time = median_time(
                lambda p=host: solve_problem(p), "cpu", args.repeats, args.warmup
            )
            row.update(cpu_time.record("solver_cpu_s"))
        if batch * solved_h * solved_w <= args.sequential_limit:
            # no warm-up: run() loaded the build, and the greedy keeps no cache between calls
            reference, sequential_time = median_time(
                lambda p=solved: solve_problem(p, "sequential"), device, args.sequential_repeats, 0
            )
            trivial = trivial_objective(*solved.inputs)
            gained = improvement_ratio(trivial, labeling.objective, reference.objective)
            row.update(sequential_time.record("sequential_s"))
            row["speedup"] = sequential_time.median / solver_time.median
            row["quality"] = float(gained.min())

        def inference(build=build) -> torch.Tensor:
            network()  # the solver gets the synthetic costs instead (module docstring)
            return solve_problem(build()).segments

        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        _, inference_time = median_time(inference, device, args.repeats, args.warmup)
        row.update(inference_time.record("inference_s"))
        row["ms_per_image"] = 1000 * inference_time.median / batch
        row["peak_memory_mb"] = _peak_memory_mb(device)
        rows.append(row)
    return rows


def _format(row: dict, key: str, digits: int = 3) -> str:
    """A cell: a timing as ``median (min–max)``, a float with ``digits``, "–" where absent."""
    if f"{key}_times" in row:
        return Timing(tuple(row[f"{key}_times"])).text(digits)
    value = row.get(key)
    if value is None:
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def run(args: argparse.Namespace) -> None:
    if min(args.repeats, args.sequential_repeats, *args.batch_sizes) < 1 or args.warmup < 0:
        raise ValueError(
            "--repeats, --sequential-repeats and --batch-sizes must be ≥ 1, --warmup ≥ 0"
        )
    device = resolve_device(args.device)
    distances = tuple(args.distances)
    config = ModelConfig.preset(args.model, num_classes=args.classes, distances=distances)
    model = COPSNet(config).to(device).eval()
    _, partitionable = class_roles(args.classes)
    layer = AMWCLayer(partitionable, distances).to(device).eval()
    for backend in {device, torch.device("cpu")}:
        warm_up_solvers(backend)
    rows = []
    configurations = [(size, batch) for size in args.sizes for batch in args.batch_sizes]
    with torch.no_grad(), tqdm(configurations, unit="configuration") as bar:
        for size, batch in bar:
            bar.set_description(f"{size[0]}x{size[1]} batch {batch}")
            rows += _measure(args, device, model, layer, size, batch)
    columns = [
        ("size", "size"), ("batch", "B"), ("resolution", "resolution"), ("grid", "grid"),
        ("model_s", "model s"), ("solver_s", f"solver s ({device.type})"),
        ("solver_cpu_s", "solver s (cpu)"), ("sequential_s", "sequential s"),
        ("speedup", "speed-up"), ("quality", "quality"), ("inference_s", "inference s"),
        ("ms_per_image", "ms/image"), ("peak_memory_mb", "peak MB"), ("rounds", "rounds"),
    ]  # fmt: skip
    columns = [(key, name) for key, name in columns if any(key in row for row in rows)]
    print(f"\n{args.model} model, K = {args.classes}, D = {distances} (stride 4), {device}")
    print(
        format_table([n for _, n in columns], [[_format(r, k) for k, _ in columns] for r in rows])
    )
    print(
        "speed-up: over the sequential reference; quality: (trivial − parallel) / (trivial − "
        "sequential) objective, worst image; times: median (min–max) of --repeats after "
        "--warmup calls (sequential: --sequential-repeats). Published COPS (Table 8, CPU, "
        "batch 1): stride 4 2 s/image, full resolution 15 s/image."
    )
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
        print(f"written: {args.json}")


HELP = "time the model, the solver backends and the whole inference, stride 4 vs full"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--sizes", type=_size, nargs="+", default=[(256, 512), (1024, 2048)],
        help="image sizes HEIGHTxWIDTH (default: 256x512 1024x2048)",
    )  # fmt: skip
    parser.add_argument(
        "--batch-sizes", type=int, nargs="+", default=[1], help="batch sizes (default: 1)"
    )
    parser.add_argument("--classes", type=int, default=19, help="K (default: 19)")
    parser.add_argument(
        "--distances", type=int, nargs="+", default=[1, 4, 16, 32, 64],
        help="affinity distances on the stride-4 grid (default: 1 4 16 32 64)",
    )  # fmt: skip
    parser.add_argument(
        "--resolutions", nargs="+", choices=["stride4", "full"], default=["stride4", "full"],
        help="where to solve (default: both)",
    )  # fmt: skip
    parser.add_argument(
        "--model", choices=["tiny", "full"], default="full",
        help="network size: full (ResNet-50, the paper's) or tiny (default: full)",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, … (default: auto)")
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (default: 3)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed calls first (default: 1)")
    parser.add_argument(
        "--sequential-repeats", type=int, default=1,
        help="timed calls of the slow sequential reference, no warm-up (default: 1)",
    )  # fmt: skip
    parser.add_argument(
        "--sequential-limit", type=int, default=8 * 131072,
        help="time the sequential reference up to this many nodes per batch (default: 1048576)",
    )  # fmt: skip
    parser.add_argument("--json", help="also write the rows to this JSON file")
