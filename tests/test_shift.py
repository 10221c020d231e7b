"""The edge-feature shift S_d: Triton kernel (interpreted on CPU in CI) against the torch
reference, the reference against the grid's edge layout, gradients, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gpucops.grid import grid_edges
from gpucops.kernels import edge_feature_shift, edge_feature_shift_reference

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _features(shape, dtype=torch.float32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g, dtype=torch.float64).to(DEVICE, dtype)


def test_reference_differences_follow_the_solver_edge_layout():
    # the difference stored at an edge's map position is f(second end) − f(first end)
    height, width, distances = 7, 9, (2, 3, 4)
    f = _features((1, 1, height, width), torch.float64)
    maps = edge_feature_shift_reference(f, distances)
    edges, map_index = grid_edges(height, width, (1, *distances))
    values = f.flatten()
    stacked = torch.cat([torch.zeros(1, 2, height, width, dtype=torch.float64), *maps], 1)
    # stacked channels: 2i = row, 2i + 1 = col for distance index i (d = 1 left as zeros)
    per_distance = torch.stack([stacked[0, 0::2], stacked[0, 1::2]], 1).flatten()
    chosen = map_index >= 2 * height * width  # skip d = 1
    expected = values[edges[chosen, 1]] - values[edges[chosen, 0]]
    assert torch.equal(per_distance[map_index[chosen]], expected)
    # and every position without an edge holds 0
    holds_edge = torch.zeros_like(per_distance, dtype=torch.bool)
    holds_edge[map_index] = True
    assert not per_distance[~holds_edge].any()


@given(
    batch=st.integers(0, 2),
    channels=st.integers(1, 2),
    height=st.integers(1, 40),
    width=st.integers(1, 140),
    distances=st.lists(st.integers(2, 12), min_size=1, max_size=2, unique=True),
    seed=st.integers(0, 2**16),
)
def test_kernel_equals_the_reference(batch, channels, height, width, distances, seed):
    # shapes around the block sizes and distances ≥ H or ≥ W (all-zero maps)
    f = _features((batch, channels, height, width), seed=seed).requires_grad_()
    maps = edge_feature_shift(f, sorted(distances), implementation="triton")
    expected = edge_feature_shift_reference(f, sorted(distances))
    for got, want in zip(maps, expected, strict=True):
        assert got.shape == (batch, 2 * channels, height, width)
        assert torch.equal(got, want)
    grads = [_features(m.shape, seed=seed + 1 + i) for i, m in enumerate(maps)]
    (got,) = torch.autograd.grad(maps, f, grads)
    # all-zero reference maps do not depend on f: materialise its gradient as zeros
    (want,) = torch.autograd.grad(expected, f, grads, allow_unused=True, materialize_grads=True)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16, torch.float16])
def test_kernel_dtypes(dtype):
    f = _features((2, 3, 9, 20), dtype).requires_grad_()
    maps = edge_feature_shift(f, (2, 5), implementation="triton")
    expected = edge_feature_shift_reference(f, (2, 5))
    for got, want in zip(maps, expected, strict=True):
        assert got.dtype == dtype
        if dtype == torch.bfloat16 and DEVICE == "cpu":
            # the interpreter rounds float32 → bfloat16 toward zero (GPUs round to nearest)
            torch.testing.assert_close(got, want, rtol=2**-7, atol=0)
        else:
            assert torch.equal(got, want)
    grads = [torch.ones_like(m) for m in maps]
    (got,) = torch.autograd.grad(maps, f, grads)
    (want,) = torch.autograd.grad(expected, f, grads)
    torch.testing.assert_close(got, want)  # the kernel adds in float32, then rounds once


def test_gradcheck_reference_and_kernel():
    f = _features((1, 2, 6, 7), torch.float64).requires_grad_()
    assert torch.autograd.gradcheck(lambda x: edge_feature_shift_reference(x, (2, 3)), (f,))
    # fast mode (random projections): a few interpreted launches instead of one per element
    assert torch.autograd.gradcheck(
        lambda x: edge_feature_shift(x, (2, 3), implementation="triton"), (f,), fast_mode=True
    )


def test_one_output_per_distance_only_one_used():
    # the backward sees zeros for maps that do not reach the loss
    f = _features((1, 2, 8, 8)).requires_grad_()
    maps = edge_feature_shift(f, (2, 4), implementation="triton")
    maps[1].sum().backward()
    ref = f.detach().clone().requires_grad_()
    edge_feature_shift_reference(ref, (2, 4))[1].sum().backward()
    torch.testing.assert_close(f.grad, ref.grad)


@pytest.mark.parametrize(
    ("features", "distances", "message"),
    [
        (torch.zeros(2, 3, 4), (2,), "features must be"),
        (torch.zeros(1, 1, 4, 4, dtype=torch.int64), (2,), "floating-point"),
        ("x", (2,), "features must be a torch.Tensor"),
        (torch.zeros(1, 1, 4, 4), (), "distances must not be empty"),
        (torch.zeros(1, 1, 4, 4), (1, 2), "distances must hold integers > 1"),
        (torch.zeros(1, 1, 4, 4), (2.5,), "distances must hold integers > 1"),
        (torch.zeros(1, 1, 4, 4), 3, "distances must be a sequence"),
    ],
)
def test_bad_input_names_the_argument(features, distances, message):
    with pytest.raises(ValueError, match=message):
        edge_feature_shift(features, distances)


def test_unknown_implementation():
    with pytest.raises(ValueError, match="implementation"):
        edge_feature_shift(torch.zeros(1, 1, 4, 4), (2,), implementation="cuda")
