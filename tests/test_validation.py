"""Bad input raises ValueError naming the argument; it never reaches the solver."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gpucops

K = 3
PART = torch.tensor([False, True, True])


def grid_inputs(batch=1, height=4, width=5, distances=(1, 2)):
    return (
        torch.zeros(batch, K, height, width),
        torch.ones(batch, 2 * len(distances), height, width),
        PART,
        distances,
    )


def graph_inputs():
    return torch.zeros(4, K), torch.tensor([[0, 1], [1, 2], [2, 3]]), torch.ones(3), PART


def with_value(tensor, index, value):
    tensor = tensor.clone()
    tensor[index] = value
    return tensor


GRID_CASES = {
    "nan node cost": (
        lambda a: (with_value(a[0], (0, 1, 2, 3), float("nan")), *a[1:]),
        "node_costs",
    ),
    "inf edge cost": (
        lambda a: (a[0], with_value(a[1], (0, 0, 0, 0), float("inf")), *a[2:]),
        "edge_costs",
    ),
    "node rank": (lambda a: (a[0][0], *a[1:]), "node_costs"),
    "integer costs": (lambda a: (a[0].long(), *a[1:]), "node_costs"),
    "K = 0": (lambda a: (a[0][:, :0], a[1], PART[:0], a[3]), "K = 0"),
    "edge channels": (lambda a: (a[0], a[1][:, :3], *a[2:]), "edge_costs"),
    "edge batch": (lambda a: (a[0], torch.cat([a[1], a[1]]), *a[2:]), "edge_costs"),
    "edge size": (lambda a: (a[0], a[1][..., :4], *a[2:]), "edge_costs"),
    "partitionable length": (lambda a: (a[0], a[1], PART[:2], a[3]), "partitionable"),
    "partitionable dtype": (lambda a: (a[0], a[1], PART.long(), a[3]), "partitionable"),
    "distance zero": (lambda a: (*a[:3], (0, 2)), "distances"),
    "distances not increasing": (lambda a: (*a[:3], (2, 1)), "distances"),
    "distance too long": (lambda a: (*a[:3], (1, 5)), "distances"),
    "distance not integer": (lambda a: (*a[:3], (1, 2.5)), "distances"),
}


@pytest.mark.parametrize("case", GRID_CASES, ids=list(GRID_CASES))
def test_solve_rejects_bad_grid_input(case):
    change, name = GRID_CASES[case]
    with pytest.raises(ValueError, match=name):
        gpucops.solve(*change(grid_inputs()), method="sequential")


def test_distance_beyond_one_side_is_fine():
    node_costs, edge_costs, part, _ = grid_inputs(height=4, width=9, distances=(1, 6))
    lab = gpucops.solve(node_costs, edge_costs, part, (1, 6), method="sequential")
    assert lab.classes.shape == (1, 4, 9)


GRAPH_CASES = {
    "edge out of range": (lambda a: (a[0], torch.tensor([[0, 4]]), torch.ones(1), a[3]), "edges"),
    "negative edge": (lambda a: (a[0], torch.tensor([[-1, 2]]), torch.ones(1), a[3]), "edges"),
    "self-loop": (lambda a: (a[0], torch.tensor([[2, 2]]), torch.ones(1), a[3]), "self-loops"),
    "edge dtype": (lambda a: (a[0], a[1].float(), *a[2:]), "edges"),
    "edge shape": (lambda a: (a[0], a[1].T, *a[2:]), "edges"),
    "edge cost count": (lambda a: (*a[:2], torch.ones(2), a[3]), "edge_costs"),
    "nan edge cost": (lambda a: (*a[:2], with_value(a[2], 1, float("nan")), a[3]), "edge_costs"),
    "node cost rank": (lambda a: (a[0][None], *a[1:]), "node_costs"),
    "costs not a tensor": (lambda a: (a[0].tolist(), *a[1:]), "node_costs"),
}


@pytest.mark.parametrize("case", GRAPH_CASES, ids=list(GRAPH_CASES))
def test_solve_graph_rejects_bad_input(case):
    change, name = GRAPH_CASES[case]
    with pytest.raises(ValueError, match=name):
        gpucops.solve_graph(*change(graph_inputs()), method="sequential")


def test_edges_joining_two_images_are_rejected():
    with pytest.raises(ValueError, match="image_index"):
        gpucops.solve_graph(
            *graph_inputs(), image_index=torch.tensor([0, 0, 1, 1]), method="sequential"
        )


@pytest.mark.parametrize(
    ("image_index", "name"),
    [
        (torch.tensor([0, 0, 0]), "image_index"),
        (torch.tensor([0, 0, 0, -1]), "image_index"),
        (torch.zeros(4), "image_index"),
    ],
)
def test_bad_image_index(image_index, name):
    with pytest.raises(ValueError, match=name):
        gpucops.solve_graph(*graph_inputs(), image_index=image_index, method="sequential")


def test_bad_label_mask():
    args = graph_inputs()
    with pytest.raises(ValueError, match="label_mask"):
        gpucops.solve_graph(
            *args, method="sequential", label_mask=torch.ones(1, K, dtype=torch.bool)
        )
    with pytest.raises(ValueError, match="label_mask"):
        gpucops.solve_graph(
            *args, method="sequential", label_mask=torch.zeros(2, K, dtype=torch.bool)
        )


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"method": "magic"}, "method"),
        ({"method": "sequential", "backend": "tpu"}, "backend"),
        ({"method": "sequential", "backend": "cuda"}, "backend"),
    ],
)
def test_bad_method_or_backend(kwargs, name):
    with pytest.raises(ValueError, match=name):
        gpucops.solve_graph(*graph_inputs(), **kwargs)


@pytest.mark.gpu
def test_inputs_on_two_devices_are_rejected():
    node_costs, edges, edge_costs, part = graph_inputs()
    with pytest.raises(ValueError, match="edges"):
        gpucops.solve_graph(node_costs.cuda(), edges, edge_costs.cuda(), part, method="sequential")


def test_device_mismatch_is_rejected_on_meta_tensors():
    # a device mismatch without a GPU: edge costs on the meta device
    node_costs, edges, _, part = graph_inputs()
    with pytest.raises(ValueError, match="edge_costs"):
        gpucops.objective_graph(
            node_costs,
            edges,
            torch.empty(3, device="meta"),
            part,
            torch.zeros(4, dtype=torch.long),
            torch.zeros(4, dtype=torch.long),
        )


@given(
    position=st.integers(0, 3 * 4 * 5 - 1),
    value=st.sampled_from([float("nan"), float("inf"), float("-inf")]),
    target=st.sampled_from(["node_costs", "edge_costs"]),
)
def test_any_non_finite_cost_is_rejected(position, value, target):
    node_costs, edge_costs, part, distances = grid_inputs()
    tensor = node_costs if target == "node_costs" else edge_costs
    tensor.view(-1)[position % tensor.numel()] = value
    with pytest.raises(ValueError, match=target):
        gpucops.solve(node_costs, edge_costs, part, distances, method="sequential")


def test_finite_costs_whose_sum_overflows_are_accepted():
    # the finiteness check sums first; an overflowing sum of finite entries is not an error
    node_costs, edge_costs, part, distances = grid_inputs()
    edge_costs.fill_(3e38)  # float32: every entry finite, their sum +inf
    assert not torch.isfinite(edge_costs.sum())
    lab = gpucops.solve(node_costs, edge_costs, part, distances)
    assert lab.classes.shape == node_costs[:, 0].shape


def test_half_costs_are_accepted_as_float32():
    node_costs, edge_costs, part, distances = grid_inputs()
    lab = gpucops.solve(
        node_costs.half(), edge_costs.bfloat16(), part, distances, method="sequential"
    )
    assert lab.objective.dtype == torch.float64


def test_empty_inputs_give_empty_results():
    node_costs, edge_costs, part, distances = grid_inputs(batch=0)
    lab = gpucops.solve(node_costs, edge_costs, part, distances, method="sequential")
    assert lab.classes.shape == (0, 4, 5) and lab.segments.shape == (0, 4, 5)
    assert lab.objective.shape == (0,)
    g = gpucops.solve_graph(
        torch.zeros(0, K),
        torch.zeros(0, 2, dtype=torch.long),
        torch.zeros(0),
        PART,
        method="sequential",
    )
    assert g.classes.shape == (0,) and g.segments.shape == (0,) and g.objective.shape == (0,)


def test_cuda_backend_without_a_device_is_rejected():
    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(ValueError, match="backend"):
        gpucops.solve(*grid_inputs(), backend="cuda")


@pytest.mark.parametrize("value", [0, -0.1, 1.5, True, "0.3"])
def test_bad_top_fraction(value):
    with pytest.raises(ValueError, match="top_fraction"):
        gpucops.solve(*grid_inputs(), top_fraction=value)
    with pytest.raises(ValueError, match="top_fraction"):
        gpucops.solve_graph(torch.zeros(2, 1), torch.tensor([[0, 1]]), torch.ones(1),
                            torch.tensor([True]), top_fraction=value)  # fmt: skip


@pytest.mark.parametrize("name", ["tile", "tail", "tail_edges"])
@pytest.mark.parametrize("value", [-1, 2.0, True, "8"])
def test_bad_integer_options(name, value):
    with pytest.raises(ValueError, match=f"{name} must be an integer ≥ 0"):
        gpucops.solve(*grid_inputs(), **{name: value})
    if name != "tile":  # solve_graph takes its tiles per node
        with pytest.raises(ValueError, match=f"{name} must be an integer ≥ 0"):
            gpucops.solve_graph(torch.zeros(2, 1), torch.tensor([[0, 1]]), torch.ones(1),
                                torch.tensor([True]), **{name: value})  # fmt: skip


def test_options_are_keyword_only():
    # the problem is positional, every option a keyword: a misplaced option fails loudly
    with pytest.raises(TypeError):
        gpucops.solve(*grid_inputs(), "sequential")
