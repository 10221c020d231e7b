"""The faults a first GPU run would hit in the CUDA launch path, caught on the CPU (issue 19):
inputs that require grad, launches outside the launch's stream and device, the default device,
kept buffers moving between streams, and CuPy's cache key. Each solve here runs the real launch
code with a stand-in for CuPy (``tests/cupy_standin.py``)."""

from __future__ import annotations

import collections
import shutil

import pytest
import torch

import gpucops
from gpucops.solver import backend
from gpucops.solver.backend import KernelSteps, cuda_program, cuda_sources, steps_for
from gpucops.synthetic import make_problem
from tests.cupy_standin import Stream, cuda_launch_path

HOST = torch.device("cpu")


def problem_arguments(seed: int = 4):
    p = make_problem(2, 20, 28, 19, distances=(1, 4), seed=seed)
    return p.node_costs, p.edge_costs, p.partitionable, p.distances


def assert_same_labeling(got, expected) -> None:
    for name in ("classes", "segments", "objective"):
        assert torch.equal(getattr(got, name), getattr(expected, name)), name


def test_the_cuda_launch_path_solves_as_the_host(monkeypatch):
    args = problem_arguments()
    expected = gpucops.solve(*args)
    with cuda_launch_path(monkeypatch) as standin:
        got = gpucops.solve(*args)
    assert_same_labeling(got, expected)
    assert standin.programs == [cuda_program()]  # compiled once, with the options of the key
    assert standin.launches


@pytest.mark.parametrize("tail", [0, 1024])
def test_the_warp_kernels_solve_the_solvers_own_problems_as_the_host(monkeypatch, tail):
    # a GPU's kernels with a warp per item — the 16 × 16 tiles' greedy, every round's bucket
    # sorts (buckets of hundreds of edges at Cityscapes' distances) — in whole solves, with
    # rounds to the end and with the tail
    p = make_problem(2, 96, 160, 19, distances=(1, 4, 16, 32, 64), seed=tail)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    expected = gpucops.solve(*args, tail=tail)
    launched = collections.Counter()
    with cuda_launch_path(monkeypatch):
        steps = steps_for(torch.device("cpu"))
        launch_cuda = steps._launch_cuda

        def recorded(name, count, arguments):
            launched[name] += 1
            launch_cuda(name, count, arguments)

        monkeypatch.setattr(steps, "_launch_cuda", recorded)
        got = gpucops.solve(*args, tail=tail)
    assert_same_labeling(got, expected)
    assert got.info["rounds"] == expected.info["rounds"] > (0 if tail else 3)
    warp_kernels = ("tile_greedy_warp", "bucket_sort_warp", "bucket_sort_runs_warp")
    assert all(launched[name] > 0 for name in warp_kernels), launched
    assert not {"tile_greedy", "bucket_sort", "bucket_sort_runs"} & set(launched)


def test_inputs_that_require_grad_solve_on_the_cuda_launch_path(monkeypatch):
    # the kept float64 copies of the inputs inherited requires_grad, and the DLPack export
    # refused them (BufferError at the first launch that took one)
    node_costs, edge_costs, partitionable, distances = problem_arguments()
    expected = gpucops.solve(node_costs, edge_costs, partitionable, distances)
    node_costs.requires_grad_()
    edge_costs.requires_grad_()
    with cuda_launch_path(monkeypatch):
        got = gpucops.solve(node_costs, edge_costs, partitionable, distances)
    assert_same_labeling(got, expected)
    kept = steps_for(HOST)._scratch.values()
    assert not any(buffer.requires_grad for buffer in kept)  # no caller's graph kept alive


def test_launches_happen_inside_the_launch_device_and_stream(monkeypatch):
    # outside the stream's context, CuPy's current stream is another than torch's, and the
    # kernels would run unordered with torch's work on the same tensors
    with cuda_launch_path(monkeypatch) as standin:
        steps = steps_for(HOST)
        gpucops.solve(*problem_arguments())
    index = steps.device.index
    expected = (index, (standin.current.cuda_stream, index))
    assert standin.launches and set(standin.launches) == {expected}


def test_a_tensor_of_another_device_is_refused_before_the_launch(monkeypatch):
    # a raw pointer of another device would fault inside the kernel: a clear error instead
    with cuda_launch_path(monkeypatch) as standin:
        steps = steps_for(HOST)
        costs = torch.zeros(3, 2, dtype=torch.float64, device="meta")
        minimum, argmin = torch.empty(3, dtype=torch.float64), torch.empty(3, dtype=torch.int64)
        with pytest.raises(ValueError, match="kernel row_min runs on cpu, got a tensor on meta"):
            steps._launch("row_min", 3, 3, 2, costs, minimum, argmin)
    assert not standin.launches


def test_a_bare_cuda_device_means_the_current_one(monkeypatch):
    # `device.index or 0` launched on device 0 whatever the current device was
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 1)
    assert KernelSteps(torch.device("cuda")).device == torch.device("cuda", 1)
    monkeypatch.setattr(backend, "_PER_THREAD", type(backend._PER_THREAD)())
    monkeypatch.setattr(backend, "KernelSteps", lambda device: ("steps", device))
    monkeypatch.setitem(__import__("sys").modules, "cupy", object())
    assert steps_for(torch.device("cuda")) is steps_for(torch.device("cuda", 1))


def test_kept_buffers_follow_the_current_stream(monkeypatch):
    # a solve on a second stream reused the first stream's kept buffers while its work could
    # still be running, and never recorded the second stream on them
    args = problem_arguments()
    expected = gpucops.solve(*args)
    with cuda_launch_path(monkeypatch) as standin:
        first = standin.current
        gpucops.solve(*args)
        recorded_before = len(standin.recorded)
        gpucops.solve(*args)
        assert first.waited_for == [] and len(standin.recorded) == recorded_before  # same stream
        second = standin.current = Stream(8)
        got = gpucops.solve(*args)
        kept = {buffer.data_ptr() for buffer in steps_for(HOST)._scratch.values()}
    assert_same_labeling(got, expected)
    assert second.waited_for == [first]
    # every buffer kept from the first stream's solves recorded the second stream
    assert kept <= {pointer for pointer, stream in standin.recorded if stream is second}


def test_an_edited_header_changes_the_cuda_cache_key(tmp_path):
    # CuPy keys its cache by the source string and the options: an edit of shim.cuh alone
    # reused the stale binary
    folder = tmp_path / "cuda"
    shutil.copytree(cuda_sources(), folder)
    before = cuda_program(folder)
    shim = folder / "shim.cuh"
    shim.write_text(shim.read_text() + "\n// edited\n")
    after = cuda_program(folder)
    assert after[0] == before[0]  # the same .cu source string …
    assert after != before  # … but another key


@pytest.mark.parametrize("name", ["row_min", "tile_greedy"])
def test_the_module_is_built_once_per_device(monkeypatch, name):
    with cuda_launch_path(monkeypatch) as standin:
        for _ in range(2):
            backend._cuda_module(None).get_function(name)
    assert len(standin.programs) == 1


def test_the_tail_off_the_cpu_goes_to_the_host_build_and_back(monkeypatch):
    # on a GPU an image's tail is copied to the host build's greedy, its roots copied back: the
    # labeling is the one the kernel's own tail gives
    from gpucops.solver import rounds

    args = problem_arguments()
    expected = gpucops.solve(*args, tail=400)
    on_host = []
    monkeypatch.setattr(rounds, "_tail_on_host", lambda device: on_host.append(device) or True)
    with cuda_launch_path(monkeypatch):
        got = gpucops.solve(*args, tail=400)
    assert_same_labeling(got, expected)
    assert on_host and got.info["tail_merges"] > 0
