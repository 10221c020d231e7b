"""Set-up of the pytest-benchmark suites (``make bench``, ``make bench-save``, ``make
bench-compare``; README, "Benchmarks").

* ``--smoke``: every case on a tiny grid, one round, the loose smoke floor — the suites' plumbing
  in seconds (``benchmarks/gpu_validate.sh --dry-run``, ``tests/test_benchmark_suites.py``).
* Every benchmark's ``extra_info`` gets the machine's load average (1, 5, 15 min) before and
  after it: on a shared machine a slow figure is read beside it.
* ``machine_info`` (what a saved baseline records) gets the baseline folder's machine id and the
  versions of torch and the GPU's name.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import gpucops  # noqa: F401  (first: idle OpenMP threads sleep, as in the CLI; gpucops/_openmp.py)

# isort: split
import pytest
import torch
from machine_id import machine_id
from suite import FLOORS, SMOKE_FLOOR, SOLVER_CASES, SolverCase, check_floor

from gpucops.inference import ImageProblem, build_problem, solve_problem, warm_up_solvers
from gpucops.labeling import PanopticLabeling
from gpucops.objectives import improvement_ratio, trivial_objective
from gpucops.synthetic import make_problem
from gpucops.timing import synchronize


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--smoke", action="store_true",
        help="gpucops suites: tiny shapes, one round, loose quality floor (plumbing only)",
    )  # fmt: skip


def pytest_benchmark_update_machine_info(config: pytest.Config, machine_info: dict) -> None:
    machine_info["gpucops"] = {
        "machine_id": machine_id(),
        "torch": torch.__version__,
        "cuda_device": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
    }


@pytest.fixture(scope="session")
def smoke(request: pytest.FixtureRequest) -> bool:
    return request.config.getoption("--smoke")


@pytest.fixture(autouse=True)
def _load_average(request: pytest.FixtureRequest):
    """The load average (1, 5, 15 min) before and after each benchmark."""
    if "benchmark" not in request.fixturenames:
        yield
        return
    extra_info = request.getfixturevalue("benchmark").extra_info
    extra_info["load_before"] = os.getloadavg()
    yield
    extra_info["load_after"] = os.getloadavg()


class Timer:
    """``benchmark.pedantic`` with the device synchronised inside each timed call: ``rounds``
    timed calls after ``warmup`` untimed ones (one and none with ``--smoke``); and the quality
    record with its floor."""

    def __init__(self, benchmark: Any, device: str, smoke: bool):
        self.benchmark, self.device, self.smoke = benchmark, device, smoke

    def __call__(
        self,
        function: Callable[..., Any],
        rounds: int,
        warmup: int = 1,
        setup: Callable[[], tuple[tuple, dict]] | None = None,
    ) -> Any:
        def timed(*args: Any, **kwargs: Any) -> Any:
            result = function(*args, **kwargs)
            synchronize(self.device)
            return result

        return self.benchmark.pedantic(
            timed, setup=setup, rounds=1 if self.smoke else rounds,
            warmup_rounds=0 if self.smoke else warmup, iterations=1,
        )  # fmt: skip

    def record(self, **figures: Any) -> None:
        self.benchmark.extra_info.update(figures)

    def check(self, key: str, quality: float, **figures: Any) -> None:
        """Record ``quality`` and ``figures`` (objective, rounds, …), then fail below the floor
        of ``key`` (with ``--smoke`` the loose smoke floor)."""
        floor = SMOKE_FLOOR if self.smoke else FLOORS[key]
        self.record(quality=quality, quality_floor=floor, **figures)
        check_floor(key, quality, floor)


@pytest.fixture
def timer(benchmark: Any, smoke: bool, request: pytest.FixtureRequest) -> Timer:
    params = getattr(request.node, "callspec", None)
    device = params.params.get("device", "cpu") if params else "cpu"
    warm_up_solvers(device)  # host libraries, CUDA modules: loaded before anything is timed
    return Timer(benchmark, device, smoke)


class Problems:
    """The solver cases' problems and their sequential references (seconds each: made once a
    session, or taken from the sequential benchmark that timed them anyway)."""

    def __init__(self, smoke: bool):
        self.smoke = smoke
        self._references: dict[str, torch.Tensor] = {}

    def case(self, name: str) -> SolverCase:
        case = SOLVER_CASES[name]
        return case.smoke() if self.smoke else case

    def problem(self, name: str, device: str = "cpu", images: int | None = None) -> ImageProblem:
        """The case's problem on ``device``; ``images``: only the first ones of the batch."""
        case = self.case(name)
        batch = case.batch if images is None else images
        p = make_problem(batch, case.height, case.width, case.classes, case.distances, seed=0)
        stride = 4 if case.full else 1  # full: stride-4 costs of a 4× larger image
        size = (stride * case.height, stride * case.width)
        problem = build_problem(
            p.node_costs, p.edge_costs, p.partitionable, p.distances, size, case.full, stride
        )
        return problem.to(device)

    def reference(self, name: str) -> torch.Tensor:
        """``[reference images]`` objectives of the sequential greedy."""
        if name not in self._references:
            problem = self.problem(name, images=self.case(name).reference_images)
            self._references[name] = solve_problem(problem, "sequential").objective
        return self._references[name]

    def keep_reference(self, name: str, labeling: PanopticLabeling) -> None:
        """The sequential solve of the reference images that a benchmark timed anyway."""
        self._references[name] = labeling.objective.cpu()

    def quality(self, name: str, objective: torch.Tensor, reference: torch.Tensor) -> float:
        """Worst (trivial − objective) / (trivial − reference) over the reference images."""
        count = self.case(name).reference_images
        trivial = trivial_objective(*self.problem(name, images=count).inputs)
        return float(improvement_ratio(trivial, objective[:count].cpu(), reference).min())


@pytest.fixture(scope="session")
def problems(smoke: bool) -> Problems:
    return Problems(smoke)
