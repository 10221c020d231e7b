"""Hypothesis fuzzing of the solver front and the file readers: whatever comes in, the answer is a
valid result or one clear error (``ValueError``, or ``OSError`` for files) naming the argument or
file — never another exception, a crash, or a silent wrong answer (issue 18)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

import gpucops
from gpucops.checkpoint import load_model
from gpucops.data import read_image, read_panoptic_json, read_panoptic_png, write_panoptic_png
from tests.checkpoints import write_tiny_checkpoint

ARGUMENTS = ("node_costs", "edges", "edge_costs", "partitionable", "image_index", "label_mask",
             "tiles", "top_fraction", "method", "backend", "distances", "tile")  # fmt: skip

_values = st.sampled_from([0.0, -1.5, 2.0, 1e30, -1e300, math.inf, -math.inf, math.nan, 3.0])
_dtypes = st.sampled_from([torch.float32, torch.float64, torch.float16, torch.int64, torch.int32,
                           torch.bool, torch.complex64, torch.uint8])  # fmt: skip


@st.composite
def _tensor(draw, shape: tuple[int, ...], valid_dtype: torch.dtype, values=_values):
    """A tensor of ``shape`` and ``valid_dtype`` most of the time; otherwise another shape (a
    dimension more, less or off by one) or dtype."""
    mode = draw(st.sampled_from(["valid"] * 6 + ["shape", "dtype", "dims"]))
    if mode == "shape" and shape:
        axis = draw(st.integers(0, len(shape) - 1))
        shape = tuple(s + (1 if i == axis else 0) for i, s in enumerate(shape))
    elif mode == "dims":
        shape = draw(st.sampled_from([shape[:-1], (*shape, 1), ()]))
    dtype = draw(_dtypes) if mode == "dtype" else valid_dtype
    count = math.prod(shape)
    data = draw(st.lists(values, min_size=count, max_size=count))
    if dtype.is_floating_point or dtype.is_complex:
        return torch.tensor(data, dtype=torch.float64).reshape(shape).to(dtype)
    finite = [int(v) if math.isfinite(v) and abs(v) < 1e9 else 7 for v in data]
    return torch.tensor(finite, dtype=torch.int64).reshape(shape).to(dtype)


@st.composite
def graph_inputs(draw) -> dict:
    n, k = draw(st.integers(0, 5)), draw(st.integers(0, 3))
    e = draw(st.integers(0, 6))
    node_ids = st.integers(-1, n).map(float)
    kwargs = {
        "node_costs": draw(_tensor((n, k), torch.float32)),
        "edges": draw(_tensor((e, 2), torch.int64, node_ids)),
        "edge_costs": draw(_tensor((e,), torch.float32)),
        "partitionable": draw(_tensor((k,), torch.bool, st.sampled_from([0.0, 1.0]))),
    }
    if draw(st.booleans()):
        kwargs["image_index"] = draw(_tensor((n,), torch.int64, st.integers(-1, 3).map(float)))
    if draw(st.booleans()):
        kwargs["label_mask"] = draw(_tensor((1, k), torch.bool, st.sampled_from([0.0, 1.0])))
    kwargs["method"] = draw(st.sampled_from(["parallel", "sequential", "greedy"]))
    if draw(st.booleans()):
        kwargs["top_fraction"] = draw(st.sampled_from([0.3, 1.0, 0.0, -1.0, math.nan, None]))
    if draw(st.booleans()):
        kwargs["backend"] = draw(st.sampled_from(["auto", "cpu", "cuda", "tpu"]))
    return kwargs


def _names_an_argument(error: Exception) -> bool:
    return any(name in str(error) for name in ARGUMENTS)


@given(graph_inputs())
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_solve_graph_answers_any_input_with_a_labeling_or_a_clear_error(kwargs):
    copies = {k: v.clone() for k, v in kwargs.items() if torch.is_tensor(v)}
    try:
        result = gpucops.solve_graph(**kwargs)
    except ValueError as error:
        assert _names_an_argument(error) and "\n" not in str(error), error
        return
    finally:
        for name, copy in copies.items():  # inputs untouched, accepted or refused
            torch.testing.assert_close(kwargs[name], copy, rtol=0, atol=0, equal_nan=True)
    node_costs = kwargs["node_costs"].double()
    n, k = node_costs.shape
    assert result.classes.shape == (n,) and result.segments.shape == (n,)
    assert ((result.classes >= 0) & (result.classes < k)).all()
    if "label_mask" in kwargs:  # allowed classes only
        assert kwargs["label_mask"][0, result.classes].all()
    # the objective by its definition: chosen class costs, plus the costs of cut edges
    edges, edge_costs = kwargs["edges"].long(), kwargs["edge_costs"].double()
    u, v = edges.unbind(1) if len(edges) else (edges[:0, 0], edges[:0, 0])
    cut = (result.classes[u] != result.classes[v]) | (result.segments[u] != result.segments[v])
    total = node_costs.gather(1, result.classes[:, None]).sum() + edge_costs[cut].sum()
    assert math.isclose(result.objective.sum().item(), total.item(), rel_tol=1e-9, abs_tol=1e-9)


@given(
    height=st.integers(0, 6), width=st.integers(0, 6), k=st.integers(0, 3),
    distances=st.sampled_from([(1,), (1, 2), (), (0,), (2, 1), (1, 1), (1, 9), (-1,), (1.5,)]),
    tile=st.sampled_from([0, 2, 16, -1]), batch=st.integers(0, 2), data=st.data(),
)  # fmt: skip
@settings(max_examples=100, suppress_health_check=[HealthCheck.too_slow], deadline=None)
def test_solve_answers_any_grid_input_with_a_labeling_or_a_clear_error(
    height, width, k, distances, tile, batch, data
):
    node_costs = data.draw(_tensor((batch, k, height, width), torch.float32))
    edge_costs = data.draw(_tensor((batch, len(distances) * 2, height, width), torch.float32))
    partitionable = data.draw(_tensor((k,), torch.bool, st.sampled_from([0.0, 1.0])))
    try:
        result = gpucops.solve(node_costs, edge_costs, partitionable, distances, tile=tile)
    except ValueError as error:
        assert _names_an_argument(error) and "\n" not in str(error), error
        return
    assert result.classes.shape == node_costs.shape[:1] + node_costs.shape[2:]
    assert ((result.classes >= 0) & (result.classes < node_costs.shape[1])).all()
    assert torch.isfinite(result.objective).all()


def _mutations() -> st.SearchStrategy:
    """A function of the bytes of a valid file: cut short, bytes overwritten, junk, or empty."""
    cut = st.floats(0, 1).map(lambda f: lambda b: b[: int(len(b) * f)])
    flip = st.tuples(st.floats(0, 1), st.binary(min_size=1, max_size=8)).map(
        lambda t: lambda b: b[: int(len(b) * t[0])] + t[1] + b[int(len(b) * t[0]) + len(t[1]) :]
    )
    junk = st.binary(max_size=64).map(lambda j: lambda b: j)
    return st.one_of(cut, flip, junk)


def _valid_files(folder: Path) -> dict[str, Path]:
    Image.fromarray(np.arange(48 * 3, dtype=np.uint8).reshape(4, 12, 3)).save(folder / "i.png")
    write_panoptic_png(folder / "p.png", np.arange(12, dtype=np.uint32).reshape(3, 4))
    document = {"annotations": [{"image_id": "a", "file_name": "a.png", "segments_info": []}],
                "categories": [{"id": 1, "name": "road", "isthing": 0}]}  # fmt: skip
    (folder / "j.json").write_text(json.dumps(document))
    write_tiny_checkpoint(folder / "c.pt")
    return {"image": folder / "i.png", "panoptic png": folder / "p.png",
            "json": folder / "j.json", "checkpoint": folder / "c.pt"}  # fmt: skip


READERS = {"image": read_image, "panoptic png": read_panoptic_png, "json": read_panoptic_json,
           "checkpoint": load_model}  # fmt: skip


@pytest.fixture(scope="module")
def valid_files(tmp_path_factory) -> dict[str, bytes]:
    return {
        kind: path.read_bytes() for kind, path in _valid_files(tmp_path_factory.mktemp("v")).items()
    }


@pytest.mark.parametrize("kind", list(READERS))
def test_file_readers_answer_a_damaged_file_with_a_result_or_an_error_naming_it(
    kind, valid_files, tmp_path_factory
):
    folder = tmp_path_factory.mktemp("fuzz")

    @given(_mutations())
    @settings(max_examples=40, suppress_health_check=[HealthCheck.too_slow], deadline=None)
    def check(mutate):
        path = folder / f"damaged{Path(_valid_name(kind)).suffix}"
        path.write_bytes(mutate(valid_files[kind]))
        try:
            READERS[kind](path)
        except (ValueError, OSError) as error:
            assert str(path) in str(error) and "\n" not in str(error).strip(), error

    check()


def _valid_name(kind: str) -> str:
    return {"image": "i.png", "panoptic png": "p.png", "json": "j.json", "checkpoint": "c.pt"}[kind]
