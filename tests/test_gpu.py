"""What a first GPU run must show (issue 19): whole solves, graph solves and the layer on CUDA
equal the CPU bit for bit, batch = singles on the GPU, inputs that require grad, a non-default
current stream, empty edge lists, and the Triton kernels against their references at the
largest supported shapes. All marked ``gpu``: skipped without a CUDA device (run them with
``benchmarks/gpu_validate.sh``, which also needs CuPy there for the CUDA kernels)."""

from __future__ import annotations

import pytest
import torch

import gpucops
from gpucops import layer as layer_module
from gpucops.kernels import (
    edge_costs_from_logits,
    edge_feature_shift,
    edge_feature_shift_reference,
    node_costs_from_logits,
    perturb_costs,
    perturb_costs_reference,
)
from gpucops.layer import AMWCLayer
from gpucops.losses import panoptic_quality_loss
from gpucops.synthetic import make_problem

pytestmark = pytest.mark.gpu
CUDA = torch.device("cuda")


def assert_same(got, expected) -> None:
    """Classes, segments and objective equal bit for bit (compared on the CPU)."""
    for name in ("classes", "segments", "objective"):
        assert torch.equal(getattr(got, name).cpu(), getattr(expected, name)), name


def uses_cuda_kernels() -> None:
    """Without CuPy a CUDA solve runs the torch steps (same results): say so, as a GPU run that
    never touched the kernels proves nothing about them."""
    pytest.importorskip("cupy", reason="CuPy is needed for the CUDA kernels")


@pytest.mark.parametrize(
    ("classes", "batch", "options"),
    [
        (19, 1, {}),
        (19, 3, {}),
        (133, 2, {}),
        (19, 2, {"tile": 0, "top_fraction": None}),
        (133, 1, {"tile": 4}),
        (19, 2, {"masked": True}),
    ],
)
def test_solve_on_cuda_equals_the_cpu(classes, batch, options):
    uses_cuda_kernels()
    options = dict(options)
    p = make_problem(batch, 96, 160, classes, seed=classes + batch)
    if options.pop("masked", False):
        mask = torch.zeros(batch, classes, dtype=torch.bool)
        mask[:, 1::3] = True
        options["label_mask"] = mask
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    expected = gpucops.solve(*args, **options)
    cuda_options = {k: v.cuda() if isinstance(v, torch.Tensor) else v for k, v in options.items()}
    got = gpucops.solve(*(a.cuda() if isinstance(a, torch.Tensor) else a for a in args),
                        **cuda_options)  # fmt: skip
    assert_same(got, expected)
    assert got.info["rounds"] == expected.info["rounds"]
    assert got.info["merges_per_round"] == expected.info["merges_per_round"]


def test_full_resolution_solve_on_cuda_equals_the_cpu():
    uses_cuda_kernels()
    p = make_problem(1, 512, 1024, 19, seed=1)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    expected = gpucops.solve(*args)
    assert_same(gpucops.solve(*(a.cuda() if isinstance(a, torch.Tensor) else a for a in args)),
                expected)  # fmt: skip


def random_graph(seed: int, nodes: int = 3000, edges: int = 12000, classes: int = 7):
    g = torch.Generator().manual_seed(seed)
    pairs = torch.randint(0, nodes, (edges, 2), generator=g)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]
    node_costs = torch.randn(nodes, classes, generator=g)
    edge_costs = torch.randn(pairs.shape[0], generator=g)
    partitionable = torch.arange(classes) % 2 == 0
    image_index = torch.randint(0, 3, (nodes,), generator=g)
    same = image_index[pairs[:, 0]] == image_index[pairs[:, 1]]
    tiles = torch.randint(0, 400, (nodes,), generator=g)
    return node_costs, pairs[same], edge_costs[same], partitionable, image_index, tiles


@pytest.mark.parametrize("seed", range(3))
def test_solve_graph_on_cuda_equals_the_cpu(seed):
    uses_cuda_kernels()
    *args, tiles = random_graph(seed)
    for options in ({}, {"tiles": tiles}):
        expected = gpucops.solve_graph(*args, **options)
        got = gpucops.solve_graph(*(a.cuda() for a in args),
                                  **{k: v.cuda() for k, v in options.items()})  # fmt: skip
        assert_same(got, expected)


def test_empty_edge_lists_on_cuda():
    uses_cuda_kernels()
    node_costs, _, _, partitionable, image_index, _ = random_graph(0, nodes=50)
    edges, edge_costs = torch.zeros(0, 2, dtype=torch.int64), torch.zeros(0)
    args = (node_costs, edges, edge_costs, partitionable, image_index)
    assert_same(gpucops.solve_graph(*(a.cuda() for a in args)), gpucops.solve_graph(*args))


def test_a_batch_on_cuda_equals_its_images_one_by_one():
    uses_cuda_kernels()
    p = make_problem(4, 64, 128, 19, seed=5)
    batch = gpucops.solve(p.node_costs.cuda(), p.edge_costs.cuda(), p.partitionable, p.distances)
    for b in range(4):
        single = gpucops.solve(
            p.node_costs[b : b + 1].cuda(), p.edge_costs[b : b + 1].cuda(), p.partitionable,
            p.distances,
        )  # fmt: skip
        assert torch.equal(batch.classes[b], single.classes[0])
        assert torch.equal(batch.segments[b], single.segments[0])


def test_inputs_that_require_grad_solve_on_cuda():
    uses_cuda_kernels()
    p = make_problem(2, 64, 96, 19, seed=2)
    expected = gpucops.solve(p.node_costs, p.edge_costs, p.partitionable, p.distances)
    node_costs = p.node_costs.cuda().requires_grad_()
    edge_costs = p.edge_costs.cuda().requires_grad_()
    assert_same(gpucops.solve(node_costs, edge_costs, p.partitionable, p.distances), expected)


def test_solves_on_non_default_streams_equal_the_cpu():
    uses_cuda_kernels()
    p = make_problem(2, 64, 96, 19, seed=3)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    expected = gpucops.solve(*args)
    cuda_args = tuple(a.cuda() if isinstance(a, torch.Tensor) else a for a in args)
    results = []
    for _ in range(2):  # alternate between two streams: the kept buffers move with them
        for stream in (torch.cuda.Stream(), torch.cuda.Stream()):
            with torch.cuda.stream(stream):
                results.append(gpucops.solve(*cuda_args))
    torch.cuda.synchronize()
    for got in results:
        assert_same(got, expected)


def layer_step(device: torch.device):
    """One layer forward and backward with the PQ surrogate; the logits' gradients."""
    p = make_problem(2, 48, 80, 19, distances=(1, 4, 16), seed=0)
    layer = AMWCLayer(p.partitionable, p.distances, num_samples=3).to(device)
    semantic = (-p.node_costs).to(device).requires_grad_()
    affinity = (-p.edge_costs).to(device).requires_grad_()
    out = layer(semantic, affinity, p.classes.to(device), p.segments.to(device), seed=1)
    thresholds = torch.where(p.partitionable, 50.0, 128.0).to(device)
    loss = panoptic_quality_loss(out.prediction, out.target, out.channel_classes, thresholds)
    loss.backward()
    return out, semantic.grad, affinity.grad


def test_layer_on_cuda_equals_the_cpu(monkeypatch):
    # the Triton cost and perturbation kernels may fuse a multiply-add (docs/kernels.md): with
    # their torch references the layer's solves and gradients must match bit for bit
    uses_cuda_kernels()
    expected, semantic_grad, affinity_grad = layer_step(torch.device("cpu"))
    for name in ("node_costs_from_logits", "edge_costs_from_logits", "perturb_costs"):
        function = getattr(layer_module, name)
        monkeypatch.setattr(
            layer_module, name, lambda *a, f=function, **k: f(*a, **k, implementation="torch")
        )
    got, cuda_semantic, cuda_affinity = layer_step(CUDA)
    assert_same(got.labeling, expected.labeling)
    assert torch.equal(cuda_semantic.cpu(), semantic_grad)
    assert torch.equal(cuda_affinity.cpu(), affinity_grad)


def test_layer_with_triton_kernels_on_cuda_runs_forward_and_backward():
    uses_cuda_kernels()
    out, semantic_grad, affinity_grad = layer_step(CUDA)
    assert torch.isfinite(semantic_grad).all() and torch.isfinite(affinity_grad).all()
    assert out.labeling.classes.is_cuda


def test_triton_kernels_at_the_largest_shapes_equal_their_references():
    # full resolution, 133 classes: the grids that once exceeded CUDA's y limit
    g = torch.Generator(device="cuda").manual_seed(0)
    costs = torch.randn(1, 133, 1024, 2048, device=CUDA, generator=g)
    grad = torch.randn_like(costs)
    lambdas = torch.tensor([3.0, 700.0], device=CUDA)
    torch.testing.assert_close(
        perturb_costs(costs, grad, lambdas), perturb_costs_reference(costs, grad, lambdas)
    )
    del grad
    for dropout in (0.0, 0.1):
        nodes = node_costs_from_logits(costs, 1.5, 0.25, dropout, 11)
        reference = node_costs_from_logits(costs, 1.5, 0.25, dropout, 11, implementation="torch")
        assert torch.equal(nodes == 0, reference == 0)  # the dropout masks exactly
        torch.testing.assert_close(nodes, reference)
    del costs, nodes, reference
    affinity = torch.randn(2, 12, 1024, 2048, device=CUDA, generator=g)
    scales, biases = torch.rand(6, device=CUDA), torch.randn(6, device=CUDA)
    torch.testing.assert_close(
        edge_costs_from_logits(affinity, scales, biases, 0.1, 5),
        edge_costs_from_logits(affinity, scales, biases, 0.1, 5, implementation="torch"),
    )
    features = torch.randn(2, 64, 1024, 2048, device=CUDA, generator=g)
    for got, expected in zip(
        edge_feature_shift(features, (4, 16, 32, 64)),
        edge_feature_shift_reference(features, (4, 16, 32, 64)),
        strict=True,
    ):
        assert torch.equal(got, expected)
