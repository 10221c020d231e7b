"""Counting model of the solver's GPU path on the CPU: torch ops, kernel launches, host syncs and
bytes touched per phase of one solve (issue 24).

Each solve runs the CUDA path's Python logic — the GPU-only branches taken — on CPU tensors:
:class:`~gpucops.solver.backend.KernelSteps` launches through its CUDA code with the stand-in for
CuPy of ``tests/cupy_standin.py`` (kernels: the host build), a batch is one graph (not image by
image, the CPU's way), the top fraction's cut takes the GPU's sort and kernel (not the host's
``kthvalue``) and the tail goes to the host build. A
``TorchDispatchMode`` and a counter on ``KernelSteps._launch_cuda`` count what a GPU would run. A
warm-up solve comes first, so the counted one finds the caches (grid edge order, tiles, kept
buffers, kernels) filled, as every solve after the first does.

Counting rules:
- **torch ops**: every aten op the solve's Python dispatches (views and allocations included: each
  costs host time), except those inside the project's launcher (none since it passes raw
  pointers) and the tail's greedy on the host.
- **launches**: every kernel a GPU would run, one per op: the torch ops that compute on tensor
  data, plus the project's own kernel launches. Not launches: views (ops whose schema returns an
  alias of an input they do not write: ``view``, ``as_strided``, ``detach``, ``alias``, ``t``,
  ``permute``, ``expand``, ``slice``, ``select``, ``unsqueeze``, ``split``, ``unbind``, …; and
  ``_unsafe_view``), allocations (``empty``, ``empty_like``, ``empty_strided``, ``new_empty``,
  ``resize_``), host constants (``lift_fresh``: a Python number made a tensor) and the
  host↔device transfers below. A torch op that launches several kernels (a sort, ``nonzero``,
  ``unique``, a CUB scan) counts once: a lower bound there.
- **host syncs**: every op after which the host must know a result's size or value:
  ``_local_scalar_dense`` (``.item()``, ``int``, ``bool``, ``float``, ``__index__`` of a
  tensor), ``nonzero``, ``masked_select``, ``unique`` (``_unique``, ``_unique2``,
  ``unique_dim``, ``unique_consecutive``), ``bincount`` (two: CUDA reads the input's min, then
  its max to size the output, whatever ``minlength``), ``repeat_interleave`` with tensor repeats
  and no ``output_size``, ``equal``, indexing with a boolean mask (``index``, ``index_put_`` —
  unless the value is one number, a masked fill), a ``copy_`` of a host constant into a device
  tensor (``t[i] = number``: a blocking host-to-device copy, which CUDA's copy ends with a stream
  synchronise), and ``Tensor.tolist``, ``.cpu``, ``.numpy`` (hooked: they dispatch nothing on the
  CPU). The sync ops that run kernels (``nonzero``, ``bincount``, …) count as launches too.
  ``_solve``'s closing ``torch.cuda.synchronize`` (one per solve, for its timing) cannot be taken
  on the CPU and is not counted.
- **bytes**: the sizes of the tensors each launch and each transfer takes (inputs and outputs; an
  in-place op's tensor twice): an upper-bound model of the memory traffic, not a measurement.

Phases: *setup* (validation, grid → graph, input copies) until the round loop starts; *pre-pass*
(the tiles' greedy and the contraction after it); *round k* (classes → score/pick → top fraction
→ stars → check → contraction), ending with each contraction; *finish* (the loop's last pass,
which finds nothing to merge, then the stuff merge, segment numbering and objective).

    .venv/bin/python benchmarks/gpu_model.py                     # the two target cases
    .venv/bin/python benchmarks/gpu_model.py --json counts.json --where 12
    .venv/bin/python benchmarks/gpu_model.py --cases 2x64x128 --classes 5
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import importlib
import sys
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves

import gpucops
import gpucops.solver as solver_package
from gpucops.cli import format_table, write_json
from gpucops.solver import DEFAULTS, graph, parallel, rounds
from gpucops.solver.backend import KernelSteps
from gpucops.synthetic import make_problem

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = Path(gpucops.__file__).resolve().parent
CITYSCAPES_DISTANCES = (1, 4, 16, 32, 64)
# the targets: a full-resolution image and the layer benchmark's batch of crops
TARGETS = ("1x1024x2048", "24x128x256")

aten = torch.ops.aten
NO_KERNEL = {
    aten._unsafe_view,  # a view whose schema says it is not one
    aten.empty,
    aten.empty_like,
    aten.empty_strided,
    aten.new_empty,
    aten.new_empty_strided,
    aten.resize_,
    aten.lift_fresh,
    aten._local_scalar_dense,  # a transfer: counted as a sync
}
SYNC_OPS = {
    aten._local_scalar_dense,
    aten.nonzero,
    aten.masked_select,
    aten._unique,
    aten._unique2,
    aten.unique_dim,
    aten.unique_consecutive,
    aten.equal,
}
MASK_INDEXING = {aten.index, aten.index_put_, aten.index_put, aten._index_put_impl_}
HOOKED_SYNCS = ("tolist", "cpu", "numpy")


@dataclass
class Tally:
    """Counts of one phase (or a whole solve)."""

    torch_ops: int = 0
    launches: int = 0
    syncs: int = 0
    bytes: int = 0

    def add(self, other: Tally) -> None:
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class Solve:
    """What one counted solve did: its phases in order and where launches and syncs came from."""

    phases: list[tuple[str, Tally]] = field(default_factory=lambda: [("setup", Tally())])
    launches_from: collections.Counter = field(default_factory=collections.Counter)
    syncs_from: collections.Counter = field(default_factory=collections.Counter)

    @property
    def rounds(self) -> int:
        return sum(name.startswith("round") for name, _ in self.phases)

    def total(self) -> Tally:
        total = Tally()
        for _, tally in self.phases:
            total.add(tally)
        return total

    def begin(self, name: str) -> None:
        self.phases.append((name, Tally()))

    def rename(self, name: str) -> None:
        self.phases[-1] = (name, self.phases[-1][1])


def _nbytes(values: object) -> int:
    return sum(v.numel() * v.element_size() for v in tree_leaves(values) if _is_tensor(v))


def _is_tensor(value: object) -> bool:
    return isinstance(value, torch.Tensor)


def _source() -> str:
    """The innermost line of gpucops that is running (where an op or launch comes from)."""
    frame = sys._getframe(2)
    while frame is not None and not frame.f_code.co_filename.startswith(str(PACKAGE)):
        frame = frame.f_back
    if frame is None:
        return "?"
    path = Path(frame.f_code.co_filename).relative_to(PACKAGE)
    return f"{path}:{frame.f_lineno} {frame.f_code.co_name}"


class Counter(TorchDispatchMode):
    """Counts every dispatched op and every launch of the project's kernels into ``solve``."""

    def __init__(self, solve: Solve):
        super().__init__()
        self.solve = solve
        self.launching = False  # inside the project's launcher: its exports are not counted
        # tensors made from Python numbers (by id; a tensor's == is elementwise)
        self.host_constants: dict[int, weakref.ref] = {}

    @property
    def tally(self) -> Tally:
        return self.solve.phases[-1][1]

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if self.launching:
            return out
        packet = func.overloadpacket
        if packet is aten.lift_fresh:
            self.host_constants[id(out)] = weakref.ref(out)
        self.tally.torch_ops += 1
        source = f"{_source()}: {packet.__name__}"
        launches = not (func.is_view or packet in NO_KERNEL or self._host_copy(packet, args))
        if launches:
            self.tally.launches += 1
            self.solve.launches_from[source] += 1
        for _ in range(self._syncs(func, args, kwargs)):
            self.sync(source, 0 if launches else _nbytes((args, out)))
        if launches:
            self.tally.bytes += _nbytes((args, kwargs, out))
        return out

    def _host_copy(self, packet, args) -> bool:
        if packet is not aten.copy_:
            return False
        constant = self.host_constants.get(id(args[1]))
        return constant is not None and constant() is args[1]

    def _syncs(self, func, args, kwargs) -> int:
        """How many times the host waits for the device in ``func``."""
        packet = func.overloadpacket
        if packet is aten.bincount:
            return 2
        if packet in SYNC_OPS or self._host_copy(packet, args):
            return 1
        if func is aten.repeat_interleave.Tensor:
            return int(kwargs.get("output_size") is None)
        if packet in MASK_INDEXING:
            indices = [i for i in tree_leaves(args[1]) if _is_tensor(i)]
            if not any(i.dtype in (torch.bool, torch.uint8) for i in indices):
                return 0
            # index_put_ of one number under a mask is a masked fill
            return int(packet is aten.index or args[2].dim() > 0)
        return 0

    def sync(self, source: str, nbytes: int) -> None:
        """A host sync from ``source`` that transfers ``nbytes`` (0: bytes counted as a launch)."""
        self.tally.syncs += 1
        self.tally.bytes += nbytes
        self.solve.syncs_from[source] += 1

    def launch(self, name: str, args: tuple) -> None:
        self.tally.launches += 1
        self.tally.bytes += _nbytes(args)
        self.solve.launches_from[f"kernel {name}"] += 1


def _count_hooks(patch: pytest.MonkeyPatch, counter: Counter) -> None:
    """The launcher's counter, the hooked syncs and the phase boundaries."""
    launch_cuda = KernelSteps._launch_cuda

    def counted_launch(steps, name, count, args):
        counter.launch(name, args)
        counter.launching = True
        try:
            launch_cuda(steps, name, count, args)
        finally:
            counter.launching = False

    patch.setattr(KernelSteps, "_launch_cuda", counted_launch)
    for method in HOOKED_SYNCS:
        original = getattr(torch.Tensor, method)

        def hooked(tensor, *args, _original=original, _method=method, **kwargs):
            # not on the host's own arrays (the tail's greedy): a GPU has them there already
            if not counter.launching:
                counter.sync(f"{_source()}: {_method}", _nbytes(tensor))
            return _original(tensor, *args, **kwargs)

        patch.setattr(torch.Tensor, method, hooked)

    solve = counter.solve
    contract_rounds = parallel.contract_rounds
    contract = graph.ClusterGraph.contract

    def counted_rounds(cluster_graph, tiles, tile_images, options):
        solve.begin("pre-pass" if tiles is not None else "round 1")
        result = contract_rounds(cluster_graph, tiles, tile_images, options)
        solve.rename("finish")  # the loop's last pass: nothing left to merge
        return result

    def counted_contract(cluster_graph, root, **options):
        result = contract(cluster_graph, root, **options)
        solve.begin(f"round {solve.rounds + 1}")
        return result

    patch.setattr(parallel, "contract_rounds", counted_rounds)
    patch.setattr(graph.ClusterGraph, "contract", counted_contract)
    exact_roots = rounds._exact_roots

    def host_exact_roots(*args):
        # the tail's greedy runs on the host (after the copies, counted as syncs): no GPU work,
        # then one copy of the roots back
        counter.launching = True
        try:
            roots = exact_roots(*args)
        finally:
            counter.launching = False
        counter.launch("tail roots to the device", (roots,))
        return roots

    patch.setattr(rounds, "_exact_roots", host_exact_roots)


@contextlib.contextmanager
def gpu_path() -> Iterator[pytest.MonkeyPatch]:
    """Within: solves run the CUDA path's logic on the CPU — the launch path with the stand-in
    for CuPy of ``tests/cupy_standin.py``, and the branches a GPU takes where the code checks for
    the CPU (a batch as one graph, the tail on the host build); yields the patch for more."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    standin = importlib.import_module("tests.cupy_standin")
    with pytest.MonkeyPatch.context() as patch, standin.cuda_launch_path(patch):
        split = functools.partial(solver_package.contract_parallel, split_images=False)
        patch.setattr(solver_package, "contract_parallel", split)
        patch.setattr(rounds, "_tail_on_host", lambda device: True)
        yield patch


def count_solve(
    problem: tuple, options: dict | None = None
) -> tuple[Solve, gpucops.PanopticLabeling]:
    """Solve ``problem`` (``gpucops.solve``'s positional arguments, with keyword ``options``)
    twice on the CUDA launch path and count the second solve."""
    options = options or {}
    solve = Solve()
    with gpu_path() as patch:
        gpucops.solve(*problem, **options)  # warm-up: builds and caches
        counter = Counter(solve)
        _count_hooks(patch, counter)
        with counter:
            labeling = gpucops.solve(*problem, **options)
    if solve.rounds != labeling.info["rounds"]:
        raise AssertionError(f"counted {solve.rounds} rounds, the solve ran {labeling.info}")
    return solve, labeling


def _row(name: str, tally: Tally) -> list[object]:
    return [name, tally.torch_ops, tally.launches, tally.syncs, f"{tally.bytes / 1e6:.1f}"]


def run(args: argparse.Namespace) -> list[dict]:
    records = []
    for case in args.cases:
        batch, height, width = (int(v) for v in case.split("x"))
        p = make_problem(batch, height, width, args.classes, CITYSCAPES_DISTANCES, seed=args.seed)
        solve, _ = count_solve(
            (p.node_costs, p.edge_costs, p.partitionable, p.distances),
            {"tail": args.tail, "tail_edges": args.tail_edges},
        )
        total = solve.total()
        name = f"{batch}x{height}x{width} K={args.classes}"
        records.append({"case": name, "rounds": solve.rounds, **vars(total)})
        rows = [_row(phase, tally) for phase, tally in solve.phases] + [_row("total", total)]
        print(f"\n{name}: {solve.rounds} rounds")
        print(format_table(["phase", "torch ops", "launches", "syncs", "MB"], rows))
        if not args.where:
            continue
        for title, sources in (("launches", solve.launches_from), ("syncs", solve.syncs_from)):
            print(f"\nmost {title} from:")
            for source, count in sources.most_common(args.where):
                print(f"{count:8d}  {source}")
    return records


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--cases", nargs="+", default=list(TARGETS), help="BxHxW problems (the issue's targets)"
    )
    parser.add_argument("--classes", type=int, default=19)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--tail", type=int, default=DEFAULTS.tail, help="the solver's tail (0: rounds to the end)"
    )
    parser.add_argument(
        "--tail-edges", type=int, default=DEFAULTS.tail_edges, help="the solver's tail by edges"
    )
    parser.add_argument(
        "--where", type=int, default=0, help="list the N sources of most launches and syncs"
    )
    parser.add_argument("--json", help="also write the totals per case as JSON here")
    args = parser.parse_args(argv)
    records = run(args)
    write_json(args.json, records)
    return records


if __name__ == "__main__":
    main()
