"""The grid edge layout follows the official COPS code (``aabbas90/COPS`` branch ``camera_ready``,
``affinityNet/panoptic_affinity/multicut_solvers.py``: ``get_edge_indices``, ``get_edge_list``)."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from gpucops import edge_values_to_maps, grid_edges, grid_to_graph


def node(r: int, c: int, width: int) -> int:
    return r * width + c


def test_hand_enumerated_edges_3x4():
    # H = 3, W = 4, D = (1, 2, 3), written out from the convention by hand.
    w = 4
    expected = []
    # d = 1, rows: (r, c)–(r+1, c) for r < 2
    expected += [(node(r, c, w), node(r + 1, c, w)) for r in range(2) for c in range(4)]
    # d = 1, cols: (r, c)–(r, c+1) for c < 3
    expected += [(node(r, c, w), node(r, c + 1, w)) for r in range(3) for c in range(3)]
    # d = 2, rows: stored at r = 1 only, joins rows 0 and 2
    expected += [(node(0, c, w), node(2, c, w)) for c in range(4)]
    # d = 2, cols: stored at c = 1, 2, joins c-1 and c+1
    expected += [(node(r, c - 1, w), node(r, c + 1, w)) for r in range(3) for c in (1, 2)]
    # d = 3 ≥ H: no rows; cols: before = 2, after = 1, stored at c = 2, joins c-2 and c+1
    expected += [(node(r, 0, w), node(r, 3, w)) for r in range(3)]
    edges, map_index = grid_edges(3, 4, (1, 2, 3))
    assert [tuple(e) for e in edges.tolist()] == expected
    # map positions (channel, r, c) of a few edges
    assert map_index[0].item() == 0  # d=1 row edge at (0, 0)
    assert map_index[8].item() == 12 + 0  # d=1 col edge at (0, 0), channel 1
    assert map_index[17].item() == 2 * 12 + 1 * 4 + 0  # d=2 row edge stored at (1, 0)
    assert map_index[21].item() == 3 * 12 + 0 * 4 + 1  # d=2 col edge stored at (0, 1)
    assert map_index[27].item() == 5 * 12 + 0 * 4 + 2  # d=3 col edge stored at (0, 2)


def test_even_distance_edges_are_centred_on_their_map_position():
    height, width, d = 9, 11, 4
    edges, map_index = grid_edges(height, width, (d,))
    for (u, v), flat in zip(edges.tolist(), map_index.tolist(), strict=True):
        channel, rest = divmod(flat, height * width)
        r, c = divmod(rest, width)
        (ru, cu), (rv, cv) = divmod(u, width), divmod(v, width)
        if channel == 0:
            assert (ru, rv, cu, cv) == (r - d // 2, r + d // 2, c, c)
        else:
            assert (cu, cv, ru, rv) == (c - d // 2, c + d // 2, r, r)


@given(
    height=st.integers(1, 12),
    width=st.integers(1, 12),
    distances=st.lists(st.integers(1, 11), min_size=1, max_size=4, unique=True).map(sorted),
)
def test_edge_counts_order_and_span(height, width, distances):
    if max(distances) >= height and max(distances) >= width:
        with pytest.raises(ValueError, match="distances"):
            grid_edges(height, width, tuple(distances))
        return
    edges, map_index = grid_edges(height, width, tuple(distances))
    expected = sum(max(height - d, 0) * width + height * max(width - d, 0) for d in distances)
    assert edges.shape == (expected, 2)
    # official order = channel-major map order: for each d, rows (row-major) then cols
    assert bool((map_index[1:] > map_index[:-1]).all())
    ru, cu = edges[:, 0] // width, edges[:, 0] % width
    rv, cv = edges[:, 1] // width, edges[:, 1] % width
    span = torch.where(ru == rv, cv - cu, rv - ru)
    channel = map_index // (height * width)
    assert torch.equal(span, torch.tensor(distances)[channel // 2])
    assert bool(((ru == rv) == (channel % 2 == 1)).all())


def test_grid_to_graph_offsets_images_and_reads_the_maps():
    batch, height, width, distances = 2, 5, 6, (1, 2)
    node_costs = torch.randn(batch, 3, height, width)
    edge_costs = torch.randn(batch, 4, height, width)
    nodes, edges, costs, image_index = grid_to_graph(node_costs, edge_costs, distances)
    single, _ = grid_edges(height, width, distances)
    e = single.shape[0]
    assert torch.equal(edges[:e], single) and torch.equal(edges[e:], single + height * width)
    assert torch.equal(image_index, torch.tensor([0] * 30 + [1] * 30))
    assert torch.equal(nodes[30 + 2 * width + 3], node_costs[1, :, 2, 3])
    # second d=1 col edge of image 1 is stored at (0, 1), channel 1
    first_col = (height - 1) * width
    assert costs[e + first_col + 1] == edge_costs[1, 1, 0, 1]


def test_sorted_listing_is_the_same_edges_ordered_by_end_points():
    batch, height, width, distances = 2, 7, 9, (1, 2, 4)
    edge_costs = torch.randn(batch, 6, height, width)
    node_costs = torch.randn(batch, 3, height, width)
    _, official, official_costs, _ = grid_to_graph(node_costs, edge_costs, distances)
    _, edges, costs, _ = grid_to_graph(node_costs, edge_costs, distances, sort_edges=True)
    keys = edges[:, 0] * batch * height * width + edges[:, 1]
    assert bool((keys[1:] > keys[:-1]).all())  # strictly: sorted, no duplicates
    # the same (edge, cost) triples as the official order
    official_keys = official[:, 0] * batch * height * width + official[:, 1]
    order = torch.argsort(official_keys)
    assert torch.equal(official_keys[order], keys) and torch.equal(official_costs[order], costs)


def test_edge_values_round_trip_with_masked_fill():
    height, width, distances = 6, 7, (1, 4)
    edges, _ = grid_edges(height, width, distances)
    values = torch.arange(2 * edges.shape[0], dtype=torch.float32).view(2, -1)
    maps = edge_values_to_maps(values, height, width, distances, fill=-1)
    assert maps.shape == (2, 4, height, width)
    assert (maps == -1).sum() == 2 * (4 * height * width - edges.shape[0])
    # reading the maps back in edge order gives the values again
    _, _, costs, _ = grid_to_graph(torch.zeros(2, 1, height, width), maps, distances)
    assert torch.equal(costs.view(2, -1), values)
    # d = 4 vertical edges sit at rows 2..3 (rows 0, 1, 4, 5 masked)
    assert bool((maps[:, 2, [0, 1, 4, 5]] == -1).all()) and bool((maps[:, 2, 2:4] >= 0).all())
