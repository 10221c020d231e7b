"""Inference: the full-resolution problem, the problem builder and its tile, label upsampling,
small-segment removal, and the Predictor (which must not import the trainer)."""

from __future__ import annotations

import copy
import subprocess
import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

import gpucops
from gpucops.grid import edge_values_to_maps, grid_edges, stride_samples
from gpucops.inference import (
    Predictor,
    build_problem,
    full_resolution_costs,
    full_resolution_distances,
    remove_small_segments,
    solve_problem,
    upsample_labels,
)
from gpucops.solver import DEFAULTS
from tests.checkpoints import write_tiny_checkpoint

DISTANCES = (1, 4, 8)


def _centres(height: int, width: int, distances: tuple[int, ...]) -> tuple[torch.Tensor, ...]:
    """Per edge of the grid (official order): row and column of its centre, and its map index."""
    edges, map_index = grid_edges(height, width, distances)
    rows, cols = edges // width, edges % width
    return rows.double().mean(1), cols.double().mean(1), map_index


def _edge_maps_of(function, height, width, distances, factor=1):
    """Edge maps whose value at every edge is ``function(row, col)`` of its centre in image
    pixels (grid coordinate g ↔ pixel factor·g + (factor − 1)/2)."""
    rows, cols, _ = _centres(height, width, distances)
    offset = (factor - 1) / 2
    values = function(factor * rows + offset, factor * cols + offset)
    return edge_values_to_maps(values[None], height, width, distances, fill=float("nan"))


def test_full_resolution_distances_keep_the_image_distances_and_add_one():
    assert full_resolution_distances((1, 4, 16, 32, 64)) == (1, 4, 16, 64, 128, 256)


def test_edge_values_are_taken_at_each_full_resolution_edge_centre():
    """A stride-4 edge map linear in the edge centre's image position resamples to the same
    linear function of each full-resolution edge's centre — wherever that centre lies between
    stored stride-4 edges of its source distance (no clamping)."""
    h, w, size = 12, 16, (46, 64)

    def linear(row, col):
        return 0.5 * row - 0.25 * col + 3

    stride = _edge_maps_of(linear, h, w, DISTANCES, factor=4).nan_to_num()
    nodes = torch.zeros(1, 2, h, w)
    _, edges, full = full_resolution_costs(nodes, stride, DISTANCES, size)
    assert full == (1, 4, 16, 32)
    rows, cols, map_index = _centres(*size, full)
    got = edges.reshape(-1)[map_index].double()
    expected = linear(rows, cols)
    # the source edge range: centres of stored stride-4 edges, in image pixels, per channel
    inside = torch.zeros_like(got, dtype=torch.bool)
    channel = map_index // (size[0] * size[1])
    for k, d in enumerate(full):
        source = DISTANCES.index(1 if d == 1 else d // 4)
        s_rows, s_cols, s_index = _centres(h, w, DISTANCES)
        for axis in (0, 1):
            mine = channel == 2 * k + axis
            theirs = s_index // (h * w) == 2 * source + axis
            along_mine, along_theirs = (rows, 4 * s_rows + 1.5) if axis == 0 else (
                cols, 4 * s_cols + 1.5)  # fmt: skip
            across_mine, across_theirs = (cols, 4 * s_cols + 1.5) if axis == 0 else (
                rows, 4 * s_rows + 1.5)  # fmt: skip
            inside |= (
                mine
                & (along_mine >= along_theirs[theirs].min())
                & (along_mine <= along_theirs[theirs].max())
                & (across_mine >= across_theirs[theirs].min())
                & (across_mine <= across_theirs[theirs].max())
            )
    assert inside.float().mean() > 0.5
    torch.testing.assert_close(got[inside], expected[inside].to(got.dtype), rtol=0, atol=1e-5)


def test_border_edges_never_mix_in_missing_edges():
    """A constant stride-4 map gives every full-resolution edge exactly that constant, near the
    borders too (positions without a stride-4 edge are not interpolated from)."""
    h, w = 10, 12
    stride = _edge_maps_of(lambda r, c: torch.full_like(r, 2.5), h, w, DISTANCES).nan_to_num(-99)
    _, edges, full = full_resolution_costs(torch.zeros(2, 3, h, w), stride.expand(2, -1, -1, -1),
                                           DISTANCES, (40, 48))  # fmt: skip
    _, map_index = grid_edges(40, 48, full)
    assert edges.shape == (2, 2 * len(full), 40, 48)
    assert (edges.reshape(2, -1)[:, map_index] == 2.5).all()


def test_node_costs_are_upsampled_bilinearly_and_cropped():
    nodes = torch.arange(12.0).view(1, 1, 3, 4).expand(1, 2, -1, -1).contiguous()
    edges = torch.zeros(1, 2 * len(DISTANCES), 3, 4)
    full_nodes, _, _ = full_resolution_costs(nodes, edges, DISTANCES, (10, 15))
    expected = torch.nn.functional.interpolate(nodes, scale_factor=4, mode="bilinear")
    torch.testing.assert_close(full_nodes, expected[..., :10, :15])


def test_full_resolution_costs_reject_bad_sizes():
    nodes, edges = torch.zeros(1, 2, 3, 4), torch.zeros(1, 6, 3, 4)
    with pytest.raises(ValueError, match="size"):
        full_resolution_costs(nodes, edges, DISTANCES, (13, 16))
    with pytest.raises(ValueError, match="distances"):
        full_resolution_costs(nodes, edges, (4, 8, 16), (12, 16))


def test_full_resolution_solve_recovers_a_clean_scene():
    """Noise-free costs of a scene on the stride grid, solved at full resolution, give each
    ground-truth segment one segment (up to the stride-4 boundary blur)."""
    from gpucops.synthetic import make_scene, noisy_costs

    generator = torch.Generator().manual_seed(1)
    classes, segments = make_scene(64, 128, 19, generator)
    rows, cols = stride_samples(64, 4), stride_samples(128, 4)
    nodes, edges = noisy_costs(
        classes[rows][:, cols], segments[rows][:, cols], 19, DISTANCES, generator, 0.0, 0.0
    )
    full_nodes, full_edges, full = full_resolution_costs(nodes[None], edges[None], DISTANCES,
                                                         (64, 128))  # fmt: skip
    lab = gpucops.solve(full_nodes, full_edges, torch.arange(19) >= 11, full)
    accuracy = (lab.classes[0] == classes).double().mean()
    assert accuracy > 0.9
    upsampled = upsample_labels(classes[rows][:, cols], (64, 128))
    assert (lab.classes[0] == upsampled).double().mean() > 0.95


def test_upsample_labels_fills_blocks_and_crops():
    labels = torch.tensor([[[1, 2], [3, 4]]])
    up = upsample_labels(labels, (7, 5))
    assert up.shape == (1, 7, 5)
    assert up[0, :4, :4].unique().tolist() == [1] and up[0, 6, 4] == 4 and up[0, 0, 4] == 2
    with pytest.raises(ValueError, match="size"):
        upsample_labels(labels, (9, 4))


@settings(max_examples=20, deadline=None)
@given(
    st.integers(1, 3), st.integers(1, 9), st.integers(1, 9), st.integers(0, 2**31),
    st.floats(0, 30), st.floats(0, 30),
)  # fmt: skip
def test_remove_small_segments_voids_exactly_the_small_ones(
    batch, height, width, seed, thing_area, stuff_area
):
    generator = torch.Generator().manual_seed(seed)
    segments = torch.randint(-1, 6, (batch, height, width), generator=generator)
    segment_class = torch.randint(0, 4, (batch, 7), generator=generator)
    classes = torch.gather(segment_class, 1, (segments + 1).flatten(1)).view_as(segments)
    partitionable = torch.tensor([False, True, False, True])
    result = remove_small_segments(classes, segments, partitionable, thing_area, stuff_area)
    for b in range(batch):
        for segment in segments[b].unique().tolist():
            mask = segments[b] == segment
            area = int(mask.sum())
            thing = bool(partitionable[segment_class[b, segment + 1]])
            small = area < (thing_area if thing else stuff_area)
            expected = -1 if segment == -1 or small else segment
            assert (result[b][mask] == expected).all()


def test_remove_small_segments_rejects_bad_shapes():
    with pytest.raises(ValueError, match="classes and segments"):
        remove_small_segments(torch.zeros(2, 3), torch.zeros(2, 3), torch.tensor([True]))


def _stride_costs(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Random costs of a batch of 2 on a 6×7 stride-4 grid, K = 3, D = (1, 4)."""
    generator = torch.Generator().manual_seed(seed)
    nodes = torch.randn(2, 3, 6, 7, generator=generator)
    edges = torch.randn(2, 4, 6, 7, generator=generator)
    return nodes, edges, torch.tensor([False, True, True])


def test_stride_problems_keep_the_costs_and_the_solvers_tile_and_upsample_the_labels():
    nodes, edges, partitionable = _stride_costs()
    problem = build_problem(nodes, edges, partitionable, (1, 4), (22, 27))
    assert (problem.tile, problem.stride, problem.distances) == (DEFAULTS.tile, 4, (1, 4))
    assert problem.node_costs is nodes and problem.edge_costs is edges
    labeling = solve_problem(problem)
    direct = gpucops.solve(nodes, edges, partitionable, (1, 4))
    assert torch.equal(labeling.classes, upsample_labels(direct.classes, (22, 27)))
    assert torch.equal(labeling.segments, upsample_labels(direct.segments, (22, 27)))
    torch.testing.assert_close(labeling.objective, direct.objective)


def test_full_resolution_problems_carry_the_stride_as_their_tile():
    nodes, edges, partitionable = _stride_costs(1)
    problem = build_problem(nodes, edges, partitionable, (1, 4), (22, 27), full_resolution=True)
    full_nodes, full_edges, full = full_resolution_costs(nodes, edges, (1, 4), (22, 27))
    assert (problem.tile, problem.stride, problem.distances) == (4, 1, full)
    assert torch.equal(problem.node_costs, full_nodes)
    assert torch.equal(problem.edge_costs, full_edges)
    labeling = solve_problem(problem, "parallel")
    direct = gpucops.solve(full_nodes, full_edges, partitionable, full, tile=4)
    assert labeling.classes.shape == (2, 22, 27)
    assert torch.equal(labeling.segments, direct.segments)
    with pytest.raises(ValueError, match="size"):
        build_problem(nodes, edges, partitionable, (1, 4), (25, 27))


def test_predictor_normalises_once_and_pads_with_the_mean_colour(tmp_path):
    """The Predictor's logits equal the earlier pipeline's: normalise the pixels, pad with
    zeros to a multiple of 32, run a network that does not normalise."""
    write_tiny_checkpoint(tmp_path / "c.pt")
    predictor = Predictor(tmp_path / "c.pt")
    images = torch.randint(0, 256, (2, 3, 40, 56), dtype=torch.uint8)
    prediction = predictor(images)
    assert prediction.labeling.classes.shape == (2, 40, 56)
    net = copy.deepcopy(predictor.model.net)
    mean, std = net.pixel_mean.clone(), net.pixel_std.clone()
    net.pixel_mean.zero_()
    net.pixel_std.fill_(1.0)
    with torch.no_grad():
        semantic, affinity = net(F.pad((images.float() - mean) / std, (0, 8, 0, 24)))
    torch.testing.assert_close(prediction.semantic_logits, semantic[..., :10, :14], rtol=0, atol=0)
    torch.testing.assert_close(prediction.affinity_logits, affinity[..., :10, :14], rtol=0, atol=0)


def test_inference_and_the_predictor_import_nothing_of_the_trainer(tmp_path):
    """In a fresh interpreter: importing gpucops.inference, loading a checkpoint into a
    Predictor, predicting and importing the command line leave gpucops.trainer unimported."""
    write_tiny_checkpoint(tmp_path / "c.pt")
    code = f"""
        import sys
        import torch
        import gpucops.inference
        assert "gpucops.trainer" not in sys.modules, "imported by gpucops.inference"
        predictor = gpucops.inference.Predictor({str(tmp_path / "c.pt")!r})
        images = torch.zeros(1, 3, 40, 56, dtype=torch.uint8)
        assert predictor(images, full_resolution=True).labeling.classes.shape == (1, 40, 56)
        assert "gpucops.trainer" not in sys.modules, "imported by the Predictor"
        import gpucops.cli
        assert "gpucops.trainer" not in sys.modules, "imported by the command line"
        print("the trainer was not imported")
    """
    result = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=600
    )
    assert "the trainer was not imported" in result.stdout, result.stderr[-3000:]
