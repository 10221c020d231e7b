"""A fuzz set over every kernel of ``cuda/contraction.cu``, for the sanitizer and order-perturbation
builds: ``python -m tests.kernel_fuzz OUT [FLAG ...]`` runs it on the host build with the extra
compiler flags and saves every result to OUT (``torch.save``), to be compared with the default
build's bit for bit. A build with ``-DGPUCOPS_ORDER_THREADS`` runs every launch on
:data:`THREADS` threads at once (:class:`ThreadedLaunches`), and with ``-DGPUCOPS_LANE_THREADS``
too on :data:`WARP` threads, a warp's lanes."""

from __future__ import annotations

import ctypes
import queue
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import torch

from gpucops.grid import grid_to_graph
from gpucops.solver import DEFAULTS
from gpucops.solver.backend import KernelSteps, host_library
from gpucops.solver.parallel import contract_parallel
from gpucops.solver.tiles import grid_tiles, tiles_of
from gpucops.synthetic import make_problem
from tests.strategies import random_round

THREADS = 4
WARP = 32  # threads of a -DGPUCOPS_LANE_THREADS build: a warp's lanes


class ThreadedLaunches:
    """A ``-DGPUCOPS_ORDER_THREADS`` host build whose every launch runs on ``threads`` threads at
    once, each running the whole kernel with its own index (as a GPU's threads do; ctypes
    releases the GIL for the call). The threads live as long as the process: each knows its index
    from the start, and no thread's exit frees storage another one used (ThreadSanitizer took
    a later thread's thread-local block, reallocated where a finished one's had been, for a
    race)."""

    def __init__(self, library: ctypes.CDLL, threads: int = THREADS):
        self._library, self._threads = library, threads
        self._jobs = [queue.SimpleQueue() for _ in range(threads)]
        self._done: queue.SimpleQueue = queue.SimpleQueue()
        for index, jobs in enumerate(self._jobs):
            threading.Thread(target=self._work, args=(index, jobs), daemon=True).start()

    def _work(self, index: int, jobs: queue.SimpleQueue) -> None:
        self._library.gpucops_set_thread(ctypes.c_int64(index), ctypes.c_int64(self._threads))
        while True:
            kernel, args = jobs.get()
            try:
                kernel(*args)
            except Exception as error:  # handed to the launch, which raises it; the worker lives on
                self._done.put(error)
            else:
                self._done.put(None)

    def __getattr__(self, name: str) -> Callable[..., None]:
        kernel = getattr(self._library, name)

        def launch(*args: object) -> None:
            for jobs in self._jobs:
                jobs.put((kernel, args))
            errors = [error for error in (self._done.get() for _ in self._jobs) if error]
            if errors:
                raise errors[0]

        return launch


def run(library: object, rounds: int = 60, grids: int = 12) -> list[torch.Tensor]:
    """Every kernel of the host build ``library`` on ``rounds`` small random rounds (big buckets,
    tiles, label masks, whole contractions of small batches) and the tiles of ``grids`` grid
    batches, the tiles and big buckets through both kinds of kernel (a thread and a warp per
    item); each result, copied."""
    results: list[torch.Tensor] = []
    cpu = torch.device("cpu")
    kernels = KernelSteps(cpu, library=library)
    warp_kernels = KernelSteps(cpu, library=library, warps=True)

    def keep(*tensors: torch.Tensor) -> None:
        results.extend(t.clone() for t in tensors)

    for seed in range(rounds):
        clusters, k = 2 + seed % 37, 1 + seed % 5
        costs, edges, weights = random_round(seed, clusters, k, seed % 2 == 0)
        minimum, argmin = kernels.cluster_classes(costs)
        scores, picks, _ = kernels.score_pick(costs, minimum, argmin, edges, weights)
        root = kernels.star_roots(picks, edges, torch.arange(clusters), seed)
        keep(minimum, argmin, scores, picks, root)
        keep(kernels.checked_roots(root, picks, scores, costs, minimum, edges, weights))
        image = torch.arange(clusters) % 3
        same = image[edges[:, 0]] == image[edges[:, 1]]
        result = contract_parallel(
            costs.clamp(max=9), edges[same], weights[same], image, 3, None, None, DEFAULTS, kernels
        )
        keep(result.classes, result.clusters)
        for steps in (kernels, warp_kernels):  # big buckets, sorted by a thread or a warp
            keep(*steps.coalesce(edges, weights, torch.arange(clusters) % 2, 2))
            keep(steps.segment_sum(costs.clamp(max=9), torch.arange(clusters) % 2, 2))
        tiles = tiles_of(torch.arange(clusters) // (1 + seed % 7), edges)
        keep(kernels.tile_roots(costs, edges, weights, tiles, 1))
        keep(warp_kernels.tile_roots(costs, edges, weights, tiles, 1))
        keep(kernels.edge_cut(edges, argmin))
    for seed in range(grids):  # the tiles of grid batches, partial at the border
        p = make_problem(1 + seed % 3, 5 + seed, 7 + 2 * seed, 1 + seed % 6, (1, 2, 4), seed)
        nodes, edges, weights, _ = grid_to_graph(p.node_costs, p.edge_costs, p.distances, True)
        tiles = grid_tiles(5 + seed, 7 + 2 * seed, p.distances, 1 + seed % 9, torch.device("cpu"))
        for steps in (kernels, warp_kernels):
            keep(steps.tile_roots(nodes.double(), edges, weights.double(), tiles, 1 + seed % 3))
    # the solver's 16 × 16 tiles (hundreds of edges, many a lane) and a whole grid as one tile
    # (the tail's shape)
    p = make_problem(1, 40, 56, 19, (1, 4), seed=0)
    nodes, edges, weights, _ = grid_to_graph(p.node_costs, p.edge_costs, p.distances, True)
    for tiles in (
        grid_tiles(40, 56, p.distances, 16, cpu),
        tiles_of(torch.zeros(40 * 56, dtype=torch.int64), edges),
    ):
        for steps in (kernels, warp_kernels):
            keep(steps.tile_roots(nodes.double(), edges, weights.double(), tiles, 1))
    return results


def main(out: str, flags: list[str], folder: str | None = None, rounds: int = 60) -> None:
    """Build (``folder``: other sources than the shipped ones), run, save."""
    library = host_library(tuple(flags), None if folder is None else Path(folder))
    if "-DGPUCOPS_ORDER_THREADS" in flags:
        # lanes as threads: one warp's 32 lanes
        threads = WARP if "-DGPUCOPS_LANE_THREADS" in flags else THREADS
        library = ThreadedLaunches(library, threads)
    torch.save(run(library, rounds, rounds // 5), out)
    print("fuzz done")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
