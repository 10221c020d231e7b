"""pytest-benchmark suite of the AMWC solvers: the sequential reference greedy and the parallel
contraction (on the CPU host build, and on CUDA where present), on the cases of
``benchmarks/suite.py`` — stride 4 and full resolution, K = 19 and 133, batch 1 and the training
batch. Each records its objective, rounds and quality and fails below its quality floor, so a
faster-but-worse change fails too. The wider table with speed-ups: ``benchmarks/solver.py``.
"""

from __future__ import annotations

import pytest
import torch
from suite import DEVICES, SEQUENTIAL_OBJECTIVES, SINGLE_IMAGE_CASES, SOLVER_CASES

from gpucops.inference import solve_problem


def _figures(labeling) -> dict:
    return {
        "objective": float(labeling.objective.sum()),
        "rounds": labeling.info.get("rounds"),
        "merges": labeling.info.get("merges"),
    }


# first in the file: the parallel benchmarks below take these solves as their references
@pytest.mark.parametrize("name", SINGLE_IMAGE_CASES)
def test_sequential_solver(timer, problems, name):
    problem = problems.problem(name)
    # 3.7–6 s a solve: two rounds, no warm-up (the build is loaded; the greedy keeps no cache)
    labeling = timer(lambda: solve_problem(problem, "sequential"), rounds=2, warmup=0)
    problems.keep_reference(name, labeling)
    # against its own objective as first measured: the greedy is deterministic, so this moves
    # only when the reference itself changes (and with it every parallel quality figure)
    recorded = labeling.objective if problems.smoke else torch.tensor([SEQUENTIAL_OBJECTIVES[name]])
    quality = problems.quality(name, labeling.objective, recorded)
    timer.check(f"sequential/{name}", quality, **_figures(labeling))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", list(SOLVER_CASES))
def test_parallel_solver(timer, problems, name, device):
    problem = problems.problem(name, device)
    rounds = 3 if SOLVER_CASES[name].batch > 1 else 7  # the training batch: 2–3 s a solve
    labeling = timer(lambda: solve_problem(problem), rounds=rounds)
    quality = problems.quality(name, labeling.objective, problems.reference(name))
    timer.check(f"parallel/{name}", quality, **_figures(labeling))
