"""The tile pre-pass: the tile listing, kernels ``tile_greedy`` (a thread per tile) and
``tile_greedy_warp`` (a warp per tile) against the sequential reference on the edges inside tiles,
and the solver with tiles (square tiles of grids, any graph's tiles)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gpucops
from gpucops.grid import grid_to_graph
from gpucops.solver.backend import KernelSteps
from gpucops.solver.steps import TorchSteps
from gpucops.solver.tiles import grid_tiles, tiles_of
from gpucops.synthetic import make_problem
from tests.contraction import assert_same_contraction, contract
from tests.reference import tile_ids
from tests.strategies import small_graphs

HOST = torch.device("cpu")
TORCH = TorchSteps()
# the pre-pass's two kernels: a thread per tile (the host's), a warp per tile (a GPU's)
TILE_KERNELS = {
    "thread": KernelSteps(HOST, warps=False),
    "warp": KernelSteps(HOST, warps=True),
}


@given(seed=st.integers(0, 10_000), num_nodes=st.integers(1, 30), num_tiles=st.integers(1, 6))
def test_tiles_list_every_node_once_and_exactly_the_edges_inside_tiles(seed, num_nodes, num_tiles):
    g = torch.Generator().manual_seed(seed)
    tile_of = torch.randint(0, num_tiles, (num_nodes,), generator=g)
    pairs = torch.combinations(torch.arange(num_nodes), 2)
    edges = pairs[torch.randperm(pairs.shape[0], generator=g)[: 2 * num_nodes]]
    tiles = tiles_of(tile_of, edges)
    listed = set()
    for b in range(tiles.num_tiles):
        nodes = tiles.tile_nodes[tiles.node_start[b] : tiles.node_start[b + 1]].tolist()
        assert nodes == sorted(nodes) and all(tile_of[v] == b for v in nodes)
        listed.update(nodes)
        ids = tiles.tile_edges[tiles.edge_start[b] : tiles.edge_start[b + 1]]
        assert ids.tolist() == sorted(ids.tolist())
        ends = tiles.edge_ends[tiles.edge_start[b] : tiles.edge_start[b + 1]].long()
        # positions in the tile's node list lead back to the edge's end-points
        assert torch.equal(torch.tensor(nodes, dtype=torch.long)[ends], edges[ids])
    assert listed == set(range(num_nodes))
    inside = [e for e in range(edges.shape[0]) if tile_of[edges[e, 0]] == tile_of[edges[e, 1]]]
    assert sorted(tiles.tile_edges.tolist()) == inside


def test_grid_tiles_cover_the_grid_in_partial_tiles_at_the_border():
    tiles = grid_tiles(5, 7, (1, 2), 3, HOST)
    assert tiles.num_tiles == 2 * 3  # ⌈5/3⌉ × ⌈7/3⌉
    first = tiles.tile_nodes[: tiles.node_start[1]].tolist()
    assert first == [0, 1, 2, 7, 8, 9, 14, 15, 16]
    last = tiles.tile_nodes[tiles.node_start[-2] :].tolist()
    assert last == [27, 34]  # the bottom-right tile: rows 3–4 of column 6
    graph_edges = grid_to_graph(torch.zeros(1, 1, 5, 7), torch.zeros(1, 4, 5, 7), (1, 2), True)[1]
    # an edge is inside a tile exactly when both end-points share their tile
    tile_of = tile_ids(5, 7, 3)
    inside = (tile_of[graph_edges[:, 0]] == tile_of[graph_edges[:, 1]]).nonzero().flatten()
    assert sorted(tiles.tile_edges.tolist()) == inside.tolist()


def _random_grid(seed, batch, height, width, num_classes, masked):
    """A grid batch as the solver sees it: float64 masked costs and sorted edges."""
    p = make_problem(batch, height, width, num_classes, distances=(1, 2, 3), seed=seed)
    nodes, edges, weights, image_index = grid_to_graph(
        p.node_costs, p.edge_costs, p.distances, sort_edges=True
    )
    mask = None
    if masked and num_classes > 1:
        mask = torch.rand(batch, num_classes, generator=torch.Generator().manual_seed(seed)) < 0.4
        mask[:, 0] = False
    costs = TORCH.input_costs(nodes, mask, image_index)
    # coarse values make ties, which the kernel must break as the reference does
    return costs.round(decimals=0), edges, weights.double().round(decimals=0), p


@pytest.mark.parametrize("kernel_name", TILE_KERNELS)
@given(
    seed=st.integers(0, 10_000),
    batch=st.integers(1, 3),
    height=st.integers(4, 14),
    width=st.integers(4, 14),
    num_classes=st.sampled_from([1, 2, 5, 19, 40]),
    tile=st.integers(1, 9),
    masked=st.booleans(),
)
def test_tile_greedy_kernel_equals_the_sequential_reference_inside_tiles(
    kernel_name, seed, batch, height, width, num_classes, tile, masked
):
    # 40 classes: more than a warp's lanes share each merged cost row
    costs, edges, weights, p = _random_grid(seed, batch, height, width, num_classes, masked)
    tiles = grid_tiles(height, width, p.distances, tile, HOST)
    kernel = TILE_KERNELS[kernel_name].tile_roots(costs, edges, weights, tiles, batch)
    reference = TORCH.tile_roots(costs, edges, weights, tiles, batch)
    assert torch.equal(kernel, reference)
    # roots are the lowest node of their cluster, and clusters stay inside one tile
    assert bool((kernel <= torch.arange(kernel.shape[0])).all())
    image_tile = torch.arange(batch).repeat_interleave(height * width) * (height * width)
    image_tile += tile_ids(height, width, tile).repeat(batch)
    assert torch.equal(image_tile[kernel], image_tile)


@pytest.mark.parametrize("kernel_name", TILE_KERNELS)
@given(graph=small_graphs(max_nodes=10, max_classes=4), num_tiles=st.integers(1, 3))
def test_tile_greedy_kernel_equals_the_reference_on_any_tiles(kernel_name, graph, num_tiles):
    node_costs, edges, edge_costs, _ = graph
    n = len(node_costs)
    edges = torch.tensor(edges, dtype=torch.long).view(-1, 2)
    # distinct pairs, as the solver hands them over after coalescing
    edges, first = torch.unique(edges, dim=0, return_inverse=True)
    weights = torch.zeros(edges.shape[0], dtype=torch.float64)
    weights.index_add_(0, first, torch.tensor(edge_costs, dtype=torch.float64))
    tiles = tiles_of(torch.arange(n) % num_tiles, edges)
    costs = torch.tensor(node_costs, dtype=torch.float64)
    kernel = TILE_KERNELS[kernel_name].tile_roots(costs, edges, weights, tiles, 1)
    assert torch.equal(kernel, TORCH.tile_roots(costs, edges, weights, tiles, 1))


@pytest.mark.parametrize("num_classes", [19, 133])
def test_warp_tile_greedy_equals_the_reference_in_the_solvers_tiles(num_classes):
    # the pre-pass as the solver runs it: 16 × 16 tiles of Cityscapes' distances (a tile's
    # ~860 edges are ~27 per lane), the greedy running to single clusters in flat regions
    p = make_problem(2, 48, 80, num_classes, distances=(1, 4, 16, 32), seed=num_classes)
    nodes, edges, weights, _ = grid_to_graph(p.node_costs, p.edge_costs, p.distances, True)
    costs, weights = nodes.double(), weights.double()
    tiles = grid_tiles(48, 80, p.distances, 16, HOST)
    warp = TILE_KERNELS["warp"].tile_roots(costs, edges, weights, tiles, 2)
    assert torch.equal(warp, TORCH.tile_roots(costs, edges, weights, tiles, 2))
    assert torch.unique(warp).numel() < nodes.shape[0] // 10  # most nodes merged


def test_one_tile_is_the_sequential_greedy():
    # every node in one tile: the pre-pass is the whole greedy, and no round finds a merge left
    p = make_problem(2, 12, 16, 19, distances=(1, 4), seed=4)
    nodes, edges, weights, image_index = grid_to_graph(p.node_costs, p.edge_costs, p.distances)
    args = (nodes, edges, weights, p.partitionable, image_index)
    sequential = gpucops.solve_graph(*args, method="sequential")
    tiled = gpucops.solve_graph(*args, tiles=torch.zeros_like(image_index))
    assert torch.equal(tiled.classes, sequential.classes)
    assert torch.equal(tiled.segments, sequential.segments)
    assert tiled.info["rounds"] == 0
    assert tiled.info["tile_merges"] == sequential.info["merges"]


@pytest.mark.parametrize("use_kernels", [True, False])
def test_tiles_of_a_grid_equal_the_same_tiles_given_per_node(use_kernels):
    p = make_problem(2, 20, 28, 19, distances=(1, 4, 16), seed=5)
    nodes, edges, weights, image_index = grid_to_graph(
        p.node_costs, p.edge_costs, p.distances, sort_edges=True
    )
    tile = 8
    per_node = tile_ids(20, 28, tile).repeat(2) + 12 * image_index  # 3 × 4 tiles per image
    args = (nodes, edges, weights, image_index, 2)
    listed = contract(
        *args, coalesced=True, tiles=grid_tiles(20, 28, p.distances, tile, HOST),
        use_kernels=use_kernels,
    )  # fmt: skip
    given = contract(*args, tiles=per_node, use_kernels=use_kernels)
    assert_same_contraction(listed, given)
    assert listed.tile_merges > 0
    grid = gpucops.solve(*(p.node_costs, p.edge_costs, p.partitionable, p.distances), tile=tile)
    assert grid.info["tile_merges"] == listed.tile_merges


def test_kernels_and_torch_steps_agree_with_tiles():
    p = make_problem(2, 40, 56, 19, distances=(1, 4, 16), seed=8)
    nodes, edges, weights, image_index = grid_to_graph(
        p.node_costs, p.edge_costs, p.distances, sort_edges=True
    )
    args = (nodes, edges, weights, image_index, 2)
    tiles = grid_tiles(40, 56, p.distances, 16, HOST)
    with_kernels = contract(*args, coalesced=True, tiles=tiles)
    with_torch = contract(*args, coalesced=True, tiles=tiles, use_kernels=False)
    assert_same_contraction(with_kernels, with_torch)


@pytest.mark.parametrize("tiles_kind", ["listed", "per node"])
def test_one_graph_with_tiles_equals_images_one_by_one(tiles_kind):
    # the GPU's way (the batch as one graph) and the CPU's (image by image), with the pre-pass
    # and the default band
    p = make_problem(3, 24, 40, 19, distances=(1, 4, 16), seed=12)
    nodes, edges, weights, image_index = grid_to_graph(
        p.node_costs, p.edge_costs, p.distances, sort_edges=True
    )
    if tiles_kind == "listed":
        options = {"tiles": grid_tiles(24, 40, p.distances, 8, HOST), "coalesced": True}
    else:  # tiles of 50 consecutive nodes, some across two images
        options = {"tiles": torch.arange(nodes.shape[0]) // 50}
    args = (nodes, edges, weights, image_index, 3)
    together = contract(*args, split_images=False, **options)
    apart = contract(*args, split_images=True, **options)
    assert_same_contraction(together, apart)
    assert together.tile_merges > 0


@pytest.mark.parametrize("tile", [-1, 1.5, True, "16"])
def test_bad_tile_is_refused(tile):
    p = make_problem(1, 8, 8, 3, distances=(1, 2), seed=0)
    with pytest.raises(ValueError, match="tile"):
        gpucops.solve(p.node_costs, p.edge_costs, p.partitionable, p.distances, tile=tile)


@pytest.mark.parametrize(
    ("tiles", "message"),
    [
        (torch.zeros(3, dtype=torch.long), "shape"),
        (torch.zeros(4), "int32 or int64"),
        (torch.tensor([0, 1, 2, 4]), r"\[0, N\)"),
        (torch.tensor([0, -1, 0, 0]), r"\[0, N\)"),
        ([0, 0, 0, 0], "torch.Tensor"),
    ],
)
def test_bad_tiles_are_refused(tiles, message):
    costs = torch.zeros(4, 2)
    edges = torch.tensor([[0, 1], [2, 3]])
    with pytest.raises(ValueError, match=message):
        gpucops.solve_graph(costs, edges, torch.ones(2), torch.tensor([True, False]), tiles=tiles)


def test_tiles_given_per_node_follow_their_nodes_when_images_are_interleaved():
    p = make_problem(2, 16, 20, 19, distances=(1, 4), seed=9)
    nodes, edges, weights, image_index = grid_to_graph(p.node_costs, p.edge_costs, p.distances)
    tiles = tile_ids(16, 20, 4).repeat(2) + 20 * image_index  # 4×4 tiles, 20 per image
    # image 1's node i right after image 0's node i: the order within each image stays
    n = nodes.shape[0]
    order = torch.argsort(torch.arange(n) % (n // 2) * 2 + image_index)
    position = torch.empty_like(order)
    position[order] = torch.arange(n)
    grouped = gpucops.solve_graph(nodes, edges, weights, p.partitionable, image_index, tiles=tiles)
    interleaved = gpucops.solve_graph(
        nodes[order], position[edges], weights, p.partitionable, image_index[order],
        tiles=tiles[order],
    )  # fmt: skip
    assert grouped.info["tile_merges"] > 100
    assert interleaved.info["tile_merges"] == grouped.info["tile_merges"]
    assert torch.equal(interleaved.classes[position], grouped.classes)
    assert torch.equal(interleaved.segments[position], grouped.segments)
