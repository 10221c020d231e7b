"""Cost construction with cost dropout, and the perturbation kernel: Triton (interpreted on CPU
in CI) against the torch references, Philox against tl.rand, gradients, bad input."""

from __future__ import annotations

import pytest
import torch
import triton
import triton.language as tl
from hypothesis import given
from hypothesis import strategies as st

from gpucops.kernels import (
    edge_costs_from_logits,
    node_costs_from_logits,
    perturb_costs,
    perturb_costs_reference,
    philox_uniform,
)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _randn(shape, dtype=torch.float32, seed=0, requires_grad=False):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64).to(DEVICE, dtype)
    return x.requires_grad_(requires_grad)


@triton.jit
def _rand_kernel(out_ptr, seed, start, stride, BLOCK: tl.constexpr):
    index = tl.arange(0, BLOCK).to(tl.int64)
    tl.store(out_ptr + index, tl.rand(seed, start + index * stride))


@pytest.mark.parametrize("seed", [0, 1, 12345, 2**31 + 7, 2**40 + 5, 2**63 - 1])
@pytest.mark.parametrize(("start", "stride"), [(0, 1), (3, 7_000_003)])  # offsets past 2^32
def test_philox_uniform_is_tl_rand(seed, start, stride):
    out = torch.empty(512, device=DEVICE)
    _rand_kernel[(1,)](out, seed, start, stride, BLOCK=512)
    offsets = start + torch.arange(512, device=DEVICE) * stride
    assert torch.equal(philox_uniform(seed, offsets), out)
    assert ((out >= 0) & (out < 1)).all()


def test_dropout_rates_and_pattern():
    logits = torch.randn(4, 3, 64, 80)
    nodes = node_costs_from_logits(logits, 1.0, 0.5, dropout=0.1, seed=1, implementation="torch")
    dropped = nodes == 0
    # a pixel loses all its class costs or none
    assert torch.equal(dropped.all(dim=1), dropped.any(dim=1))
    assert abs(dropped[:, 0].float().mean().item() - 0.1) < 0.01
    edges = edge_costs_from_logits(
        torch.randn(4, 4, 64, 80), torch.ones(2), torch.ones(2), 0.3, 2, implementation="torch"
    )
    zero = edges == 0
    assert abs(zero.float().mean().item() - 0.3) < 0.01
    assert not torch.equal(zero[:, 0], zero[:, 1])  # each edge on its own
    again = edge_costs_from_logits(
        torch.randn(4, 4, 64, 80), torch.ones(2), torch.ones(2), 0.3, 2, implementation="torch"
    )
    assert torch.equal(again == 0, zero)  # the mask depends on (seed, offset) alone


@pytest.mark.parametrize("implementation", ["torch", "triton"])
def test_costs_follow_the_cops_formulas(implementation):
    logits = _randn((2, 5, 6, 7), torch.float64)
    scale = torch.tensor(2.0, dtype=torch.float64, device=DEVICE)
    nodes = node_costs_from_logits(logits, scale, 0.5, implementation=implementation)
    # 1e-14: a GPU may fuse the multiply-add (one rounding instead of two)
    torch.testing.assert_close(nodes, 2.0 * -logits + 0.5, rtol=0, atol=1e-14)
    affinity = _randn((2, 4, 6, 7), torch.float64, seed=1)
    scales = torch.tensor([-3.0, 0.5], dtype=torch.float64, device=DEVICE)
    biases = torch.tensor([0.25, -1.0], dtype=torch.float64, device=DEVICE)
    edges = edge_costs_from_logits(affinity, scales, biases, implementation=implementation)
    for i in range(2):
        expected = scales[i].abs() * -affinity[:, 2 * i : 2 * i + 2] + biases[i]
        torch.testing.assert_close(edges[:, 2 * i : 2 * i + 2], expected, rtol=0, atol=1e-14)


@given(
    batch=st.integers(0, 2),
    channels=st.integers(1, 4),
    height=st.integers(1, 9),
    width=st.integers(1, 70),
    dropout=st.sampled_from([0.0, 0.1, 0.5]),
    seed=st.integers(0, 2**40),
    node=st.booleans(),
)
def test_cost_kernels_equal_the_references(batch, channels, height, width, dropout, seed, node):
    if node:
        logits = _randn((batch, channels, height, width), seed=seed % 1000, requires_grad=True)
        params = (_randn((), seed=1, requires_grad=True), _randn((1,), seed=2, requires_grad=True))
        function = node_costs_from_logits
    else:
        logits = _randn((batch, 2 * channels, height, width), seed=seed % 1000, requires_grad=True)
        params = (
            _randn((channels,), seed=1, requires_grad=True),
            _randn((channels,), seed=2, requires_grad=True),
        )
        function = edge_costs_from_logits
    got = function(logits, *params, dropout, seed, implementation="triton")
    want = function(logits, *params, dropout, seed, implementation="torch")
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)  # GPUs may fuse multiply-add
    assert torch.equal(got == 0, want == 0) or not dropout  # the same mask
    grad = _randn(got.shape, seed=seed % 997)
    for a, b in zip(
        torch.autograd.grad(got, (logits, *params), grad),
        torch.autograd.grad(want, (logits, *params), grad),
        strict=True,
    ):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float64])
def test_cost_kernel_dtypes(dtype):
    logits = _randn((2, 3, 5, 9), dtype)
    got = node_costs_from_logits(logits, 1.5, 0.25, 0.2, 4, implementation="triton")
    want = node_costs_from_logits(logits, 1.5, 0.25, 0.2, 4, implementation="torch")
    assert got.dtype == dtype
    # the interpreter rounds float32 → bfloat16 toward zero, GPUs to nearest: one unit apart
    torch.testing.assert_close(got, want, rtol=2**-7 if dtype == torch.bfloat16 else 1e-3, atol=0)


def test_gradcheck():
    logits = _randn((1, 3, 3, 4), torch.float64, requires_grad=True)
    scale = _randn((), torch.float64, seed=1, requires_grad=True)
    bias = _randn((), torch.float64, seed=2, requires_grad=True)
    for implementation, fast in (("torch", False), ("triton", True)):
        assert torch.autograd.gradcheck(
            lambda x, a, b, i=implementation: node_costs_from_logits(x, a, b, 0.3, 5, i),
            (logits, scale, bias),
            fast_mode=fast,
        )
    affinity = _randn((1, 4, 3, 4), torch.float64, requires_grad=True)
    scales = torch.tensor([0.7, -1.2], dtype=torch.float64, device=DEVICE, requires_grad=True)
    biases = _randn((2,), torch.float64, seed=3, requires_grad=True)
    for implementation, fast in (("torch", False), ("triton", True)):
        assert torch.autograd.gradcheck(
            lambda x, a, b, i=implementation: edge_costs_from_logits(x, a, b, 0.3, 6, i),
            (affinity, scales, biases),
            fast_mode=fast,
        )


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: node_costs_from_logits(torch.zeros(2, 3, 4)), "semantic_logits must be"),
        (lambda: node_costs_from_logits(torch.zeros(1, 0, 2, 2)), "C ≥ 1"),
        (lambda: node_costs_from_logits(torch.zeros(1, 2, 2, 2), dropout=1.0), "dropout"),
        (lambda: node_costs_from_logits(torch.zeros(1, 2, 2, 2), seed=-1), "seed"),
        (lambda: node_costs_from_logits(torch.zeros(1, 2, 2, 2), torch.ones(2)), "scale must"),
        (lambda: edge_costs_from_logits(torch.zeros(1, 3, 2, 2), [1.0], [0.0]), "2·|D| channels"),
        (lambda: edge_costs_from_logits(torch.zeros(1, 4, 2, 2), [1.0], [0.0, 0]), "scales must"),
        (lambda: edge_costs_from_logits(torch.zeros(1, 2, 2, 2), [1.0], [0.0], "x"), "dropout"),
        (lambda: edge_costs_from_logits("x", [1.0], [0.0]), "affinity_logits must be"),
    ],
)
def test_bad_cost_input_names_the_argument(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@given(
    batch=st.integers(0, 3),
    num=st.integers(1, 5),
    shape=st.lists(st.integers(1, 40), min_size=1, max_size=3),
    seed=st.integers(0, 1000),
)
def test_perturbation_kernel_equals_the_reference(batch, num, shape, seed):
    costs = _randn((batch, *shape), seed=seed)
    grad = _randn((batch, *shape), seed=seed + 1)
    lambdas = _randn((num,), seed=seed + 2).abs() * 100
    got = perturb_costs(costs, grad, lambdas, implementation="triton")
    want = perturb_costs_reference(costs, grad, lambdas)
    assert got.shape == (batch * num, *shape)
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-5)
    if batch:
        # problem b·N + n is image b perturbed by λ_n
        b, n = batch - 1, num - 1
        torch.testing.assert_close(got[b * num + n], costs[b] + lambdas[n] * grad[b])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ((torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2)), "grad must have the shape"),
        ((torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2, 1)), "lambdas must be"),
        ((torch.zeros(2, 3), torch.zeros(2, 3).double(), torch.ones(2)), "grad must match"),
        ((torch.zeros(2, 3), torch.zeros(2, 3), torch.ones(2).long()), "lambdas must be a float"),
        ((torch.zeros(()), torch.zeros(()), torch.ones(2)), "grad must have the shape"),
    ],
)
def test_bad_perturbation_input_names_the_argument(args, message):
    with pytest.raises(ValueError, match=message):
        perturb_costs(*args)
