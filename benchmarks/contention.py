"""What a busy neighbour costs: a solve and a fine-tuning step, each timed in a fresh process per
OpenMP setting, on a quiet machine and beside a deliberate background load (issue 18, item 16).

    .venv/bin/python benchmarks/contention.py                       # all settings, 3 repeats
    .venv/bin/python benchmarks/contention.py --settings default spinning --repeats 5

Workloads (medians of a few calls after a warm-up, in the child):
- ``solve``: one 256×512, K = 19 synthetic problem, ``gpucops.solve`` (parallel, CPU);
- ``step``: one fine-tuning step of the tiny model (batch 4 of 128×256 images → 32×64 cost grid,
  K = 19, N = 5 perturbations): network forward, AMWC layer, PQ surrogate, backward, on the
  threads the trainer gives it (``gpucops.trainer.cpu_threads``: one for the tiny model);
- ``step-all-threads``: the same step on torch's default count (the trainer before
  ``cpu_threads``).

Settings (the child's environment; a fresh interpreter each, because OpenMP reads it once):
- ``default``: what a user gets (gpucops' own default: passive waiting unless the user chose);
- ``spinning``: libgomp's own default spin (``GOMP_SPINCOUNT=300000``, about 3 ms of spinning after
  every parallel region — what the solver ran with before gpucops set passive waiting);
- ``one-thread``: ``OMP_NUM_THREADS=1``.

The load is ``--load`` processes each spinning one core (a neighbour's busy loop), started before
and stopped after each timed child. Settings and loads are interleaved over the repeats, so a
drift of the machine's own load reaches all of them alike.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

SETTINGS = {
    "default": {},
    "spinning": {"GOMP_SPINCOUNT": "300000"},
    "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
    "one-thread": {"OMP_NUM_THREADS": "1"},
}
WORKLOADS = ("solve", "step", "step-all-threads")
# the variables a setting may change; cleared first so the caller's shell does not leak in
_CONTROLLED = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_NUM_THREADS")


def _median_seconds(call, repeats: int) -> float:
    call()  # warm-up: host build, kept buffers, allocator
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _solve_workload():
    import gpucops
    from gpucops.synthetic import make_problem

    p = make_problem(1, 256, 512, 19, seed=0)
    return lambda: gpucops.solve(p.node_costs, p.edge_costs, p.partitionable, p.distances)


def _step_workload(trainer_threads: bool = True):
    import torch

    from gpucops._openmp import threads
    from gpucops.layer import AMWCLayer
    from gpucops.losses import panoptic_quality_loss
    from gpucops.model import COPSNet, ModelConfig
    from gpucops.synthetic import make_problem
    from gpucops.trainer import TrainConfig, cpu_threads

    distances = (1, 4, 16, 32)
    p = make_problem(4, 32, 64, 19, distances, seed=0)
    torch.manual_seed(0)
    net = COPSNet(ModelConfig.tiny(19, distances))
    layer = AMWCLayer(p.partitionable, distances, (1.0, 50.0), 5, 0.1)
    count = cpu_threads(TrainConfig(model="tiny")) if trainer_threads else None
    images = torch.rand(4, 3, 128, 256) * 255
    thresholds = torch.where(p.partitionable, 200 / 16, 2048 / 16)

    def step() -> None:
        with threads(count):
            net.zero_grad()
            semantic, affinity = net(images)
            out = layer(semantic, affinity, p.classes, p.segments, seed=0)
            loss = panoptic_quality_loss(
                out.prediction, out.target, out.channel_classes, thresholds
            )
            loss.backward()

    return step


def child(workload: str, repeats: int) -> None:
    call = {
        "solve": _solve_workload,
        "step": _step_workload,
        "step-all-threads": lambda: _step_workload(trainer_threads=False),
    }[workload]()
    print(json.dumps({"seconds": _median_seconds(call, repeats)}))


def _timed_child(workload: str, setting: str, load: int, repeats: int) -> float:
    env = {k: v for k, v in os.environ.items() if k not in _CONTROLLED}
    env.update(SETTINGS[setting])
    spinners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(load)]
    try:
        out = subprocess.run(
            [sys.executable, __file__, "--child", workload, "--calls", str(repeats)],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.wait()
    return json.loads(out.stdout.splitlines()[-1])["seconds"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", choices=list(SETTINGS), default=list(SETTINGS))
    parser.add_argument("--workloads", nargs="+", choices=WORKLOADS,
                        default=list(WORKLOADS))  # fmt: skip
    parser.add_argument("--repeats", type=int, default=3, help="fresh processes per cell")
    parser.add_argument("--calls", type=int, default=5, help="timed calls per process")
    parser.add_argument("--load", type=int, default=1, help="spinning neighbour processes")
    parser.add_argument("--child", choices=WORKLOADS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.calls)
        return
    from gpucops.cli import format_table

    seconds: dict[tuple, list[float]] = {}
    for _ in range(args.repeats):
        for workload in args.workloads:
            for load in (0, args.load):
                for setting in args.settings:
                    cell = (workload, setting, load)
                    seconds.setdefault(cell, []).append(
                        _timed_child(workload, setting, load, args.calls)
                    )

    def spread(times: list[float]) -> str:
        return f"{statistics.median(times):.3f} ({min(times):.3f}–{max(times):.3f})"

    rows = []
    for workload in args.workloads:
        for setting in args.settings:
            quiet = seconds[(workload, setting, 0)]
            busy = seconds[(workload, setting, args.load)]
            ratio = statistics.median(busy) / statistics.median(quiet)
            rows.append([workload, setting, spread(quiet), spread(busy), f"{ratio:.2f}"])
    print(f"load: {args.load} spinning process(es); {os.cpu_count()} cores; "
          f"loadavg before the end {os.getloadavg()[0]:.2f}")  # fmt: skip
    print(format_table(["workload", "setting", "quiet s (range)", "busy s (range)", "busy/quiet"],
                       rows))  # fmt: skip


if __name__ == "__main__":
    main()
