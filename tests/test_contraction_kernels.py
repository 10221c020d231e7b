"""The kernels of cuda/: host build against the torch steps, ASan fuzz run, and
(on a GPU) the CuPy path against the host build."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gpucops
from gpucops.solver.backend import KernelSteps, cuda_sources, steps_for
from gpucops.solver.graph import ClusterGraph
from gpucops.solver.steps import TorchSteps
from gpucops.solver.tiles import grid_tiles
from gpucops.synthetic import make_problem
from tests.contraction import assert_same_contraction, contract
from tests.cupy_standin import cuda_launch_path
from tests.strategies import random_round

HOST = torch.device("cpu")
TORCH = TorchSteps()


@pytest.mark.parametrize("warps", [False, True], ids=["thread sorts", "warp sorts"])
@given(
    seed=st.integers(0, 2**31),
    clusters=st.integers(2, 40),
    k=st.integers(1, 6),
    masked=st.booleans(),
    round_index=st.integers(0, 50),
)
def test_host_kernels_equal_the_torch_steps(warps, seed, clusters, k, masked, round_index):
    # warps: the star check's buckets sorted by a warp each (a GPU's kernels) or a thread
    costs, edges, weights = random_round(seed, clusters, k, masked)
    kernels = KernelSteps(HOST, warps=warps)
    minimum, argmin = TORCH.cluster_classes(costs)
    for got, expected in zip(kernels.cluster_classes(costs), (minimum, argmin), strict=True):
        assert torch.equal(got, expected)
    labels = argmin  # any int64 labels of the clusters
    assert torch.equal(kernels.edge_cut(edges, labels), TORCH.edge_cut(edges, labels))
    # copies: the kernels return the scores and the flag in kept buffers, which the next call
    # writes again
    scores, picks, any_pick = (
        t.clone() for t in kernels.score_pick(costs, minimum, argmin, edges, weights)
    )
    expected_scores, expected_picks, expected_any = TORCH.score_pick(
        costs, minimum, argmin, edges, weights
    )
    assert bool(any_pick) == bool(expected_any) == bool((picks >= 0).any())
    scores_only = kernels.score_pick(costs, minimum, argmin, edges, weights, pick=False)
    assert torch.equal(scores_only[0], scores) and scores_only[1] is None
    assert bool(scores_only[2]) == bool(any_pick)
    assert torch.equal(scores, expected_scores) and torch.equal(picks, expected_picks)
    # the band's picks, one image or several (grouped), on the host's and the GPU's way to cut
    for image in (torch.zeros(clusters, dtype=torch.int64), torch.arange(clusters) * 3 // clusters):
        band = (scores, edges, image, int(image[-1]) + 1, (round_index + 1) / 51)
        expected = TORCH.top_fraction_pick(*band)
        assert torch.equal(kernels.top_fraction_pick(*band), expected)
        # the GPU's sorts and cut kernel, on the host build
        with pytest.MonkeyPatch.context() as patch, cuda_launch_path(patch):
            assert torch.equal(steps_for(HOST).top_fraction_pick(*band), expected)
    local = torch.arange(clusters)
    root = kernels.star_roots(picks, edges, local, round_index)
    assert torch.equal(root, TORCH.star_roots(picks, edges, local, round_index))
    stars = (root, costs, minimum, edges, weights)
    assert torch.equal(kernels.star_costs(*stars), TORCH.star_costs(*stars))
    check = (root, picks, scores, costs, minimum, edges, weights)
    checked = kernels.checked_roots(*check)
    assert torch.equal(checked, TORCH.checked_roots(*check))
    image = checked * 3 // clusters  # three images; a star's members share their root's
    got, expected = (
        kernels.contraction_map(checked, image, 3),
        TORCH.contraction_map(checked, image, 3),
    )
    roots = int(expected[1])
    assert all(map(torch.equal, got[:3], expected[:3]))
    assert torch.equal(got[3][:roots], expected[3][:roots])  # the rows past the roots: undefined
    # the contraction's class costs from the check's own buckets (the roots it just returned)
    mapping, roots = expected[0], expected[1]
    for rows in (clusters, int(roots)):  # sized by capacity, or exactly
        assert torch.equal(
            kernels.contracted_costs(costs, checked, mapping, roots, rows),
            TORCH.segment_sum(costs, mapping, rows),
        )
    # another check's buckets overwrite those of `checked`: no longer read for it
    kernels.star_costs(torch.arange(clusters), costs, minimum, edges, weights)
    assert torch.equal(
        kernels.contracted_costs(costs, checked, mapping, roots, clusters),
        TORCH.segment_sum(costs, mapping, clusters),
    )


def random_contraction(seed: int, nodes: int, clusters: int, num_edges: int):
    """Edges between ``nodes`` (duplicates, both orientations, float weights that round
    differently in another order) and a mapping of the nodes onto ``clusters``."""
    g = torch.Generator().manual_seed(seed)
    edges = torch.randint(0, nodes, (num_edges, 2), generator=g)
    edges = edges[edges[:, 0] != edges[:, 1]]
    weights = torch.randn(edges.shape[0], generator=g, dtype=torch.float64)
    mapping = torch.randint(0, clusters, (nodes,), generator=g)
    rows = torch.randn(nodes, 3, generator=g, dtype=torch.float64)
    return edges, weights, mapping, rows


@pytest.mark.parametrize("warps", [False, True], ids=["thread sorts", "warp sorts"])
@given(
    seed=st.integers(0, 2**31),
    nodes=st.integers(2, 60),
    clusters=st.integers(1, 8),
    num_edges=st.integers(0, 400),
)
def test_host_contraction_equals_the_torch_step(warps, seed, nodes, clusters, num_edges):
    # few clusters and many edges: buckets of over 32 items take the shell-sort path of a
    # thread's sort, and many steps of a warp's bitonic network (sizes not a power of two)
    edges, weights, mapping, rows = random_contraction(seed, nodes, clusters, num_edges)
    kernels = KernelSteps(HOST, warps=warps)
    merged, merged_weights = kernels.coalesce(edges, weights, mapping, clusters)
    expected, expected_weights = TORCH.coalesce(edges, weights, mapping, clusters)
    assert torch.equal(merged, expected)
    assert torch.equal(merged_weights, expected_weights)  # same order of addition: bit for bit
    assert torch.equal(
        kernels.segment_sum(rows, mapping, clusters), TORCH.segment_sum(rows, mapping, clusters)
    )
    # the round's contraction: sized by capacity, the count left on the device, inert rows after
    padded = kernels.coalesce_padded(edges, weights, mapping, clusters)
    assert all(map(torch.equal, padded, TORCH.coalesce_padded(edges, weights, mapping, clusters)))
    padded_edges, padded_weights, count = padded
    assert count.tolist() == [expected.shape[0]] and padded_edges.shape == edges.shape
    assert torch.equal(padded_edges[: int(count)], expected)
    assert (padded_edges[int(count) :] == 0).all()
    assert (padded_weights[int(count) :] == float("-inf")).all()


@given(seed=st.integers(0, 2**31), clusters=st.integers(2, 40), k=st.integers(1, 6))
def test_a_graph_sized_by_capacity_scores_and_picks_as_its_settled_graph(seed, clusters, k):
    # a round's contraction leaves its output sized by capacity until the loop reads the sizes;
    # the classes and picks run on it first, so its extra rows must change nothing
    costs, edges, weights = random_round(seed, clusters, k, False)
    graph = ClusterGraph(costs, edges, weights, torch.zeros(clusters, dtype=torch.int64), 1,
                         KernelSteps(HOST))  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    is_root = torch.rand(clusters, generator=g) < 0.4
    is_root[0] = True
    roots = is_root.nonzero().flatten()
    root = roots[torch.randint(0, len(roots), (clusters,), generator=g)]
    root[roots] = roots  # a root is its own
    padded, _ = graph.contract(root)
    # another instance: the contraction writes into its steps' kept buffers
    exact, _ = dataclasses.replace(graph, steps=KernelSteps(HOST)).contract(root, exact=True)
    num_clusters, num_edges = map(int, padded.sizes)
    assert (num_clusters, num_edges) == (exact.num_clusters, exact.edges.shape[0])
    assert torch.equal(padded.settled(num_clusters, num_edges).edges, exact.edges)
    assert torch.equal(padded.per_image, exact.per_image)
    for steps in (KernelSteps(HOST), TORCH):
        # copies: the kernels return the scores and the flag in kept buffers
        on_padded = [t.clone() for t in steps.score_pick(
            padded.costs, *steps.cluster_classes(padded.costs), padded.edges, padded.weights
        )]  # fmt: skip
        on_exact = steps.score_pick(exact.costs, *steps.cluster_classes(exact.costs),
                                    exact.edges, exact.weights)  # fmt: skip
        assert torch.equal(on_padded[0][:num_edges], on_exact[0])
        assert torch.equal(on_padded[1][:num_clusters], on_exact[1])
        assert bool(on_padded[2]) == bool(on_exact[2])
        assert (on_padded[1][num_clusters:] == -1).all()  # rows past the clusters pick nothing


def test_cluster_classes_take_the_lowest_class_on_ties():
    inf = float("inf")
    costs = torch.tensor(
        [[2.0, 1.0, 1.0], [inf, 3.0, 3.0], [inf, inf, inf], [0.5, inf, 0.5]], dtype=torch.float64
    )
    for minimum, argmin in (KernelSteps(HOST).cluster_classes(costs), TORCH.cluster_classes(costs)):
        assert minimum.tolist() == [1.0, 3.0, inf, 0.5]
        assert argmin.tolist() == [1, 1, 0, 0]


def test_packed_bucket_keys_refuse_counts_they_cannot_hold():
    # a slot packs (secondary << 32) | item: 2^31 buckets would overflow it — a clear error, not
    # a wrong sort (checked before anything is allocated)
    with pytest.raises(ValueError, match="2\\^31 buckets"):
        KernelSteps(HOST).segment_sum(
            torch.zeros(1, 2, dtype=torch.float64), torch.zeros(1, dtype=torch.int64), 2**31
        )


@pytest.mark.parametrize(("num_classes", "top_fraction"), [(19, 0.3), (133, None), (5, 0.3)])
def test_solver_with_kernels_equals_the_torch_steps(num_classes, top_fraction):
    p = make_problem(2, 32, 48, num_classes, distances=(1, 4, 16), seed=num_classes)
    nodes, edges, weights, image_index = gpucops.grid_to_graph(
        p.node_costs, p.edge_costs, p.distances
    )
    args = (nodes, edges, weights, image_index, 2)
    with_kernels = contract(*args, top_fraction=top_fraction, use_kernels=True)
    with_torch = contract(*args, top_fraction=top_fraction, use_kernels=False)
    assert_same_contraction(with_kernels, with_torch)


def test_address_sanitizer_build_runs_a_fuzz_set_clean(tmp_path):
    libasan = subprocess.run(
        ["g++", "-print-file-name=libasan.so"], capture_output=True, text=True
    ).stdout.strip()
    if not os.path.isabs(libasan):
        pytest.skip("this g++ has no AddressSanitizer runtime")
    env = dict(
        os.environ,
        LD_PRELOAD=libasan,
        ASAN_OPTIONS="detect_leaks=0",
        GPUCOPS_HOST_SANITIZE="address",
        GPUCOPS_CACHE_DIR=str(tmp_path),
    )
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    result = subprocess.run(
        [sys.executable, "-m", "tests.kernel_fuzz", str(tmp_path / "results.pt")],
        env=env,
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert "AddressSanitizer" not in result.stderr, result.stderr[-3000:]
    assert result.returncode == 0 and "fuzz done" in result.stdout, result.stderr[-3000:]
    assert list(tmp_path.glob("contraction-*.so"))  # the ASan build was made and loaded


@pytest.mark.gpu
@pytest.mark.parametrize("seed", range(5))
def test_cuda_kernels_equal_the_host_build(seed):
    costs, edges, weights = random_round(seed, 200, 19, seed % 2 == 0)
    # values whose sums round differently in another order (half-integers would not)
    g = torch.Generator().manual_seed(seed)
    costs = costs + torch.rand(costs.shape, generator=g, dtype=torch.float64) / 3
    weights = weights + torch.rand(weights.shape, generator=g, dtype=torch.float64) / 3
    host, gpu = KernelSteps(HOST), KernelSteps(torch.device("cuda"))
    for steps in (host, gpu):
        steps.begin_pass(200)  # the pass's zeroed scratch, as in a solve
    minimum, argmin = host.cluster_classes(costs)
    scores, picks, _ = host.score_pick(costs, minimum, argmin, edges, weights)
    cuda_args = [t.cuda() for t in (costs, minimum, argmin, edges, weights)]
    for got, expected in zip(gpu.cluster_classes(cuda_args[0]), (minimum, argmin), strict=True):
        assert torch.equal(got.cpu(), expected)
    assert torch.equal(gpu.edge_cut(cuda_args[3], cuda_args[2]).cpu(), host.edge_cut(edges, argmin))
    gpu_scores, gpu_picks, gpu_any = gpu.score_pick(*cuda_args)
    assert torch.equal(gpu_scores.cpu(), scores) and torch.equal(gpu_picks.cpu(), picks)
    assert bool(gpu_any) == bool((picks >= 0).any())
    assert gpu.score_pick(*cuda_args, pick=False)[1] is None
    for image, num_images in (
        (torch.arange(200) // 70, 3),
        (torch.zeros(200, dtype=torch.int64), 1),
    ):
        band = (scores, edges, image, num_images, 0.3)  # the GPU's sorts and cut kernel
        gpu_band = gpu.top_fraction_pick(
            *[a.cuda() if isinstance(a, torch.Tensor) else a for a in band]
        )
        assert torch.equal(gpu_band.cpu(), host.top_fraction_pick(*band))
    for local in (torch.arange(200), None):  # several images, or one (a kept identity)
        root = host.star_roots(picks, edges, local, seed)
        gpu_local = None if local is None else local.cuda()
        gpu_root = gpu.star_roots(gpu_picks, cuda_args[3], gpu_local, seed)
        assert torch.equal(gpu_root.cpu(), root)
    stars = (root, costs, minimum, edges, weights)
    gpu_costs = gpu.star_costs(gpu_root, *cuda_args[:2], *cuda_args[3:])
    assert torch.equal(gpu_costs.cpu(), host.star_costs(*stars))
    # the check, the contraction's map and its class costs from the check's buckets
    check = (root, picks, scores, costs, minimum, edges, weights)
    checked = host.checked_roots(*check)
    gpu_checked = gpu.checked_roots(*[t.cuda() for t in check])
    assert torch.equal(gpu_checked.cpu(), checked)
    image = checked * 3 // 200
    mapping, roots, per_image, root_image = host.contraction_map(checked, image, 3)
    got = gpu.contraction_map(gpu_checked, image.cuda(), 3)
    assert all(map(torch.equal, [t.cpu() for t in got[:3]], (mapping, roots, per_image)))
    assert torch.equal(got[3][: int(roots)].cpu(), root_image[: int(roots)])
    expected_rows = host.contracted_costs(costs, checked, mapping, roots, 200).clone()
    gpu_rows = gpu.contracted_costs(cuda_args[0], gpu_checked, got[0], got[1], 200)
    assert torch.equal(gpu_rows.cpu(), expected_rows)


@pytest.mark.gpu
@pytest.mark.parametrize("seed", range(5))
def test_cuda_contraction_equals_the_host_build(seed):
    edges, weights, mapping, rows = random_contraction(seed, 3000, 40 + 400 * seed, 20000)
    host, gpu = KernelSteps(HOST), KernelSteps(torch.device("cuda"))
    clusters = int(mapping.max()) + 1
    merged, merged_weights = host.coalesce(edges, weights, mapping, clusters)
    gpu_merged, gpu_weights = gpu.coalesce(edges.cuda(), weights.cuda(), mapping.cuda(), clusters)
    assert torch.equal(gpu_merged.cpu(), merged) and torch.equal(gpu_weights.cpu(), merged_weights)
    sums = gpu.segment_sum(rows.cuda(), mapping.cuda(), clusters)
    assert torch.equal(sums.cpu(), host.segment_sum(rows, mapping, clusters))


@pytest.mark.gpu
@pytest.mark.parametrize("tile", [1, 5, 16])
def test_cuda_tile_greedy_equals_the_host_build(tile):
    p = make_problem(3, 40, 72, 19, distances=(1, 4, 16), seed=tile)
    nodes, edges, weights, _ = gpucops.grid_to_graph(
        p.node_costs, p.edge_costs, p.distances, sort_edges=True
    )
    costs, weights = nodes.double().contiguous(), weights.double()
    tiles = grid_tiles(40, 72, p.distances, tile, HOST)
    root = KernelSteps(HOST).tile_roots(costs, edges, weights, tiles, 3)
    gpu = KernelSteps(torch.device("cuda"))
    cuda = torch.device("cuda")
    gpu_root = gpu.tile_roots(costs.cuda(), edges.cuda(), weights.cuda(), tiles.to(cuda), 3)
    assert torch.equal(gpu_root.cpu(), root)


def test_every_kernel_has_a_launch_signature():
    """Each ``extern "C" __global__`` kernel of the sources is declared for both launchers (a
    missing one would be called with untyped arguments)."""
    import re

    from gpucops.solver.backend import _SIGNATURES

    source = (cuda_sources() / "contraction.cu").read_text()
    kernels = re.findall(r'extern "C" __global__ void (\w+)\(([^)]*)\)', source)
    assert {name for name, _ in kernels} == set(_SIGNATURES)
    for name, parameters in kernels:
        # "p" for a pointer, "i" for a long long: ctypes takes an int for both on the host, so
        # only this comparison catches a swap that a GPU launch would fail on
        codes = "".join(
            "p" if "*" in parameter else "i" if "long long" in parameter else "?"
            for parameter in parameters.split(",")
        )
        assert codes == _SIGNATURES[name], name


def test_kernels_are_kept_per_thread_and_release_their_scratch():
    import threading

    p = make_problem(1, 24, 32, 19, distances=(1, 4), seed=3)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    first = gpucops.solve(*args)
    kernels = steps_for(HOST)
    assert kernels is steps_for(HOST) and kernels._scratch  # kept, with its buffers
    again = gpucops.solve(*args)  # on the kept buffers
    kernels.release_scratch()
    assert not kernels._scratch
    fresh = gpucops.solve(*args)
    for result in (again, fresh):
        assert torch.equal(result.segments, first.segments)
        assert torch.equal(result.objective, first.objective)
    other = []
    thread = threading.Thread(target=lambda: other.append(steps_for(HOST)))
    thread.start()
    thread.join()
    assert other[0] is not kernels  # threads never share scratch
