"""gpucops.multicut and multicut_energy: against the definition, brute force on tiny graphs,
cases where the greedy is provably optimal, solve_graph with K = 1, bioimage-cpp's energy and
GAEC (where installed), batches, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import gpucops
from gpucops.grid import square_tiles
from gpucops.synthetic import make_problem
from tests.reference import set_partitions

# (method, options): the sequential greedy (GAEC), the parallel rounds as they are, with tiles of
# 3 consecutive nodes, and plain (every positive score in every round)
METHODS = [
    ("sequential", {}),
    ("parallel", {}),
    ("parallel", {"tile": 3}),
    ("parallel", {"top_fraction": None}),
]
IDS = ["sequential", "parallel", "parallel-tile3", "parallel-plain"]


@st.composite
def graphs(draw, max_nodes=7, max_edges=12, signs=(-1, 1)):
    """(N, edges, costs): a small graph, costs on a coarse grid of values (ties are common);
    ``signs`` restricts the costs' signs (zero is left out when only one sign is allowed)."""
    n = draw(st.integers(1, max_nodes))
    low = -4 if -1 in signs else 1
    high = 4 if 1 in signs else -1
    pairs = [(i, j) for i in range(n) for j in range(n) if i != j]
    edges = draw(st.lists(st.sampled_from(pairs), max_size=max_edges)) if pairs else []
    costs = draw(st.lists(st.integers(low, high), min_size=len(edges), max_size=len(edges)))
    return n, edges, [c / 2 for c in costs]


def energy_by_definition(edges, costs, labels) -> float:
    return sum(c for (u, v), c in zip(edges, costs, strict=True) if labels[u] != labels[v])


def components(n: int, edges) -> list[int]:
    """Connected components of a graph, numbered by their first node (plain union-find)."""
    parent = list(range(n))

    def find(i: int) -> int:
        while parent[i] != i:
            i = parent[i]
        return i

    for u, v in edges:
        parent[find(u)] = find(v)
    roots = [find(i) for i in range(n)]
    first = list(dict.fromkeys(roots))
    return [first.index(r) for r in roots]


def solve(graph, method, options, **kwargs):
    n, edges, costs = graph
    tile = options.get("tile", 0)
    others = {k: v for k, v in options.items() if k != "tile"}
    return gpucops.multicut(
        torch.tensor(edges, dtype=torch.long).view(-1, 2),
        torch.tensor(costs, dtype=torch.float64),
        num_nodes=n,
        method=method,
        tiles=torch.arange(n) // tile if tile else None,
        **others,
        **kwargs,
    )


def assert_compact(labels: list[int]) -> None:
    first_seen = list(dict.fromkeys(labels))
    assert first_seen == list(range(len(first_seen)))  # compact, numbered by first node


def test_the_docstring_example():
    edges = torch.tensor([[0, 1], [1, 2], [2, 3], [0, 3]])
    costs = torch.tensor([2.0, -1.0, 3.0, -0.5])
    for method in ("parallel", "sequential"):
        mc = gpucops.multicut(edges, costs, method=method)
        assert mc.labels.tolist() == [0, 0, 1, 1]
        assert mc.energy.dtype == torch.float64 and mc.energy.tolist() == [-1.5]


@pytest.mark.parametrize(("method", "options"), METHODS, ids=IDS)
@given(graph=graphs())
def test_feasible_energy_by_definition_and_never_below_brute_force(method, options, graph):
    n, edges, costs = graph
    mc = solve(graph, method, options)
    labels = mc.labels.tolist()
    assert_compact(labels)
    assert mc.energy.item() == pytest.approx(energy_by_definition(edges, costs, labels), abs=1e-9)
    optimum = min(energy_by_definition(edges, costs, p) for p in set_partitions(n))
    assert mc.energy.item() >= optimum - 1e-9
    # never worse than "all cut" (every node alone), which the greedy starts from
    assert mc.energy.item() <= sum(costs) + 1e-9


@pytest.mark.parametrize(("method", "options"), METHODS, ids=IDS)
@given(graph=graphs(signs=(1,)))
def test_all_attractive_gives_the_connected_components(method, options, graph):
    n, edges, _ = graph
    mc = solve(graph, method, options)
    assert mc.labels.tolist() == components(n, edges)
    assert mc.energy.item() == 0


@pytest.mark.parametrize(("method", "options"), METHODS, ids=IDS)
@given(graph=graphs(signs=(-1,)))
def test_all_repulsive_cuts_everything(method, options, graph):
    n, _, costs = graph
    mc = solve(graph, method, options)
    assert mc.labels.tolist() == list(range(n))
    assert mc.energy.item() == pytest.approx(sum(costs), abs=1e-9)


@st.composite
def forests(draw, max_nodes=12):
    """A forest (each node i > 0 joins at most one earlier node) with non-zero costs."""
    n = draw(st.integers(1, max_nodes))
    edges, costs = [], []
    for i in range(1, n):
        parent = draw(st.integers(-1, i - 1))
        if parent >= 0:
            edges.append((parent, i) if draw(st.booleans()) else (i, parent))
            costs.append(draw(st.sampled_from([-2.0, -1.5, -0.5, 0.5, 1.0, 3.0])))
    return n, edges, costs


@pytest.mark.parametrize(("method", "options"), METHODS, ids=IDS)
@given(graph=forests())
def test_forests_are_solved_exactly(method, options, graph):
    # on a forest the optimum cuts exactly the repulsive edges, and contracting a tree's edge
    # never makes parallel edges, so the greedy's scores stay the costs: it is optimal
    n, edges, costs = graph
    mc = solve(graph, method, options)
    attractive = [e for e, c in zip(edges, costs, strict=True) if c > 0]
    assert mc.labels.tolist() == components(n, attractive)
    assert mc.energy.item() == pytest.approx(sum(min(c, 0.0) for c in costs), abs=1e-9)


@pytest.mark.parametrize("method", ["parallel", "sequential"])
@given(graph=graphs(max_nodes=12, max_edges=30), seed=st.integers(0, 2**31))
def test_equals_solve_graph_with_one_partitionable_class(method, graph, seed):
    n, edges, costs = graph
    edge_tensor = torch.tensor(edges, dtype=torch.long).view(-1, 2)
    # continuous costs as well as the tie-heavy coarse ones
    noise = torch.rand(
        len(costs), generator=torch.Generator().manual_seed(seed), dtype=torch.float64
    )
    for cost_tensor in (torch.tensor(costs, dtype=torch.float64), noise - 0.5):
        mc = gpucops.multicut(edge_tensor, cost_tensor, num_nodes=n, method=method)
        lab = gpucops.solve_graph(
            torch.zeros(n, 1, dtype=torch.float64), edge_tensor, cost_tensor,
            torch.tensor([True]), method=method,
        )  # fmt: skip
        assert torch.equal(mc.labels, lab.segments)
        assert torch.equal(mc.energy, lab.objective)
        assert mc.info["method"] == method


@pytest.mark.parametrize(("method", "options"), METHODS, ids=IDS)
@given(parts=st.lists(graphs(max_nodes=6), min_size=1, max_size=3))
def test_a_batch_through_image_index_equals_single_graphs(method, options, parts):
    edges, costs, image_index, tiles, offset = [], [], [], [], 0
    tile = options.get("tile", 0)
    for b, (n, part_edges, part_costs) in enumerate(parts):
        edges += [(u + offset, v + offset) for u, v in part_edges]
        costs += part_costs
        image_index += [b] * n
        tiles += [i // tile + offset for i in range(n)] if tile else []
        offset += n
    batch = gpucops.multicut(
        torch.tensor(edges, dtype=torch.long).view(-1, 2),
        torch.tensor(costs, dtype=torch.float64),
        image_index=torch.tensor(image_index),
        method=method,
        tiles=torch.tensor(tiles) if tile else None,
        **{k: v for k, v in options.items() if k != "tile"},
    )
    assert batch.energy.shape == (len(parts),)
    offset = 0
    for b, part in enumerate(parts):
        one = solve(part, method, options)
        assert torch.equal(batch.labels[offset : offset + part[0]], one.labels)
        assert batch.energy[b].item() == one.energy.item()
        offset += part[0]


@pytest.mark.parametrize("method", ["parallel", "sequential"])
def test_grid_with_square_tiles_equals_the_grid_solve(method):
    p = make_problem(2, 20, 24, 5, distances=(1, 2, 4), seed=3)
    _, edges, costs, image_index = gpucops.grid_to_graph(p.node_costs, p.edge_costs, p.distances)
    mc = gpucops.multicut(
        edges, costs, image_index=image_index, method=method, tiles=square_tiles(20, 24, 4, 2)
    )
    grid = gpucops.solve(
        torch.zeros(2, 1, 20, 24), p.edge_costs, [True], p.distances, method=method, tile=4
    )
    assert torch.equal(mc.labels.view(2, 20, 24), grid.segments)
    torch.testing.assert_close(mc.energy, grid.objective, rtol=1e-12, atol=1e-9)


def test_square_tiles_number_tiles_row_by_row_and_image_by_image():
    assert square_tiles(3, 5, 2, batch=2).view(2, 3, 5).tolist() == [
        [[0, 0, 1, 1, 2], [0, 0, 1, 1, 2], [3, 3, 4, 4, 5]],
        [[6, 6, 7, 7, 8], [6, 6, 7, 7, 8], [9, 9, 10, 10, 11]],
    ]
    for bad in ({"tile": 0}, {"height": 0}, {"batch": -1}, {"width": 2.5}):
        args = {"height": 3, "width": 5, "tile": 2, **bad}
        with pytest.raises(ValueError, match=next(iter(bad))):
            square_tiles(**args)


def test_nodes_without_edges_and_an_empty_graph():
    mc = gpucops.multicut(torch.tensor([[2, 1]]), torch.tensor([1.0]), num_nodes=5)
    assert mc.labels.tolist() == [0, 1, 1, 2, 3] and mc.energy.tolist() == [0.0]
    inferred = gpucops.multicut(torch.tensor([[2, 1]]), torch.tensor([-1.0]))
    assert inferred.labels.tolist() == [0, 1, 2] and inferred.energy.tolist() == [-1.0]
    empty = gpucops.multicut(torch.zeros(0, 2, dtype=torch.long), torch.zeros(0))
    assert empty.labels.shape == (0,) and empty.energy.shape == (0,)


def test_duplicate_edges_count_with_their_summed_cost():
    edges = torch.tensor([[0, 1], [1, 0], [1, 2]])
    costs = torch.tensor([2.0, -3.0, 1.0])  # 0–1 sums to −1: apart
    for method in ("parallel", "sequential"):
        mc = gpucops.multicut(edges, costs, method=method)
        assert mc.labels.tolist() == [0, 1, 1] and mc.energy.tolist() == [-1.0]
        assert gpucops.multicut_energy(edges, costs, mc.labels).tolist() == [-1.0]


@given(
    graph=graphs(max_nodes=10, max_edges=20),
    data=st.data(),
    dtype=st.sampled_from([torch.float32, torch.float64]),
)
def test_energy_equals_its_definition(graph, data, dtype):
    n, edges, costs = graph
    labels = data.draw(st.lists(st.integers(-3, 3), min_size=n, max_size=n))
    images = data.draw(st.integers(1, 3))
    # nodes in blocks of images; only edges inside a block stay
    image_of = [i * images // n for i in range(n)]
    kept = [k for k, (u, v) in enumerate(edges) if image_of[u] == image_of[v]]
    energy = gpucops.multicut_energy(
        torch.tensor([edges[k] for k in kept], dtype=torch.long).view(-1, 2),
        torch.tensor([costs[k] for k in kept], dtype=dtype),
        torch.tensor(labels),
        image_index=torch.tensor(image_of),
    )
    assert energy.dtype == torch.float64
    for b in range(max(image_of) + 1):
        expected = sum(
            costs[k]
            for k in kept
            if image_of[edges[k][0]] == b and labels[edges[k][0]] != labels[edges[k][1]]
        )
        assert energy[b].item() == pytest.approx(expected, abs=1e-6)


@given(graph=graphs(), method=st.sampled_from(["parallel", "sequential"]))
def test_inputs_are_left_alone(graph, method):
    n, edges, costs = graph
    edge_tensor = torch.tensor(edges, dtype=torch.int32).view(-1, 2)
    cost_tensor = torch.tensor(costs, dtype=torch.float32)
    image_index = torch.zeros(n, dtype=torch.int32)
    copies = [t.clone() for t in (edge_tensor, cost_tensor, image_index)]
    mc = gpucops.multicut(edge_tensor, cost_tensor, image_index=image_index, method=method)
    gpucops.multicut_energy(edge_tensor, cost_tensor, mc.labels, image_index=image_index)
    for before, after in zip(copies, (edge_tensor, cost_tensor, image_index), strict=True):
        assert torch.equal(before, after) and before.dtype == after.dtype


EDGES = torch.tensor([[0, 1], [1, 2]])
COSTS = torch.tensor([1.0, -1.0])
BAD_MULTICUT = [
    ({"edges": [[0, 1], [1, 2]]}, "edges must be a torch.Tensor"),
    ({"edges": EDGES.float()}, "edges must be int32 or int64"),
    ({"edges": torch.tensor([[0, 1, 2]])}, r"edges must have shape \[E, 2\]"),
    ({"edges": torch.tensor([[0, 1], [1, 1]])}, "edges contains self-loops"),
    ({"edges": torch.tensor([[0, 1], [-1, 2]])}, "edges has end-points outside"),
    ({"edge_costs": torch.tensor([1.0])}, r"edge_costs must have shape \[E\] = \[2\]"),
    ({"edge_costs": torch.tensor([1, 2])}, "edge_costs must be a floating tensor"),
    ({"edge_costs": torch.tensor([[1.0, 2.0]])}, "edge_costs must have 1 dimensions"),
    ({"edge_costs": torch.tensor([1.0, math.nan])}, "edge_costs contains NaN"),
    ({"edge_costs": torch.tensor([math.inf, 1.0])}, "edge_costs contains NaN or infinite"),
    ({"num_nodes": 2}, r"edges has end-points outside \[0, 2\)"),
    ({"num_nodes": -1}, "num_nodes must be an integer ≥ 0"),
    ({"num_nodes": 3.0}, "num_nodes must be an integer"),
    ({"num_nodes": True}, "num_nodes must be an integer"),
    (
        {"image_index": torch.tensor([0, 0]), "num_nodes": 3},
        r"image_index must have shape \[N\] = \[3\]",
    ),
    ({"image_index": torch.tensor([0, 0])}, r"edges has end-points outside \[0, 2\)"),
    ({"image_index": torch.tensor([0, 0, 1])}, "edges joins nodes of two different images"),
    ({"image_index": torch.tensor([0.0, 0.0, 0.0])}, "image_index must be int32 or int64"),
    ({"image_index": torch.tensor([0, -1, -1])}, "image_index must be ≥ 0"),
    ({"method": "gaec"}, "method must be one of"),
    ({"backend": "tpu"}, "backend must be one of"),
    ({"tiles": torch.tensor([0, 5, 0])}, r"tiles must lie in \[0, N\)"),
    ({"tiles": torch.tensor([0, 0])}, r"tiles must have shape \[3\]"),
    ({"top_fraction": 0.0}, "top_fraction must lie in"),
]


@pytest.mark.parametrize(("change", "message"), BAD_MULTICUT, ids=[m for _, m in BAD_MULTICUT])
def test_bad_input_raises_naming_the_argument(change, message):
    args = {"edges": EDGES, "edge_costs": COSTS, "num_nodes": None, **change}
    edges, edge_costs = args.pop("edges"), args.pop("edge_costs")
    with pytest.raises(ValueError, match=message):
        gpucops.multicut(edges, edge_costs, **args)


BAD_ENERGY = [
    ({"labels": [0, 0, 1]}, "labels must be a torch.Tensor"),
    ({"labels": torch.tensor([0.0, 0.0, 1.0])}, "labels must be int32 or int64"),
    ({"labels": torch.tensor([[0, 0, 1]])}, r"labels must have shape \[N\]"),
    ({"labels": torch.tensor([0, 1])}, r"edges has end-points outside \[0, 2\)"),
    ({"edge_costs": torch.tensor([1.0, 2.0, 3.0])}, r"edge_costs must have shape \[E\] = \[2\]"),
    ({"edge_costs": torch.tensor([math.nan, 2.0])}, "edge_costs contains NaN"),
    ({"edges": EDGES.double()}, "edges must be int32 or int64"),
    ({"image_index": torch.tensor([0, 1, 1])}, "edges joins nodes of two different images"),
]


@pytest.mark.parametrize(("change", "message"), BAD_ENERGY, ids=[m for _, m in BAD_ENERGY])
def test_bad_energy_input_raises_naming_the_argument(change, message):
    args = {"edges": EDGES, "edge_costs": COSTS, "labels": torch.tensor([0, 0, 1]), **change}
    with pytest.raises(ValueError, match=message):
        gpucops.multicut_energy(
            args.pop("edges"), args.pop("edge_costs"), args.pop("labels"), **args
        )


@given(
    graph=graphs(max_nodes=6),
    position=st.integers(0, 11),
    bad=st.sampled_from([math.nan, math.inf, -math.inf]),
)
def test_any_non_finite_cost_is_refused(graph, position, bad):
    n, edges, costs = graph
    if not costs:
        return
    costs = list(costs)
    costs[position % len(costs)] = bad
    edge_tensor = torch.tensor(edges, dtype=torch.long).view(-1, 2)
    with pytest.raises(ValueError, match="edge_costs contains NaN or infinite"):
        gpucops.multicut(edge_tensor, torch.tensor(costs), num_nodes=n)
    with pytest.raises(ValueError, match="edge_costs contains NaN or infinite"):
        gpucops.multicut_energy(edge_tensor, torch.tensor(costs), torch.zeros(n, dtype=torch.long))


@pytest.mark.gpu
def test_cuda_inputs_give_the_cpu_labels_on_cuda():
    edges = torch.randint(0, 50, (300, 2))
    edges = edges[edges[:, 0] != edges[:, 1]]
    costs = torch.randn(edges.shape[0], generator=torch.Generator().manual_seed(0))
    cpu = gpucops.multicut(edges, costs, num_nodes=50)
    cuda = gpucops.multicut(edges.cuda(), costs.cuda(), num_nodes=50)
    assert cuda.labels.device.type == "cuda"
    assert torch.equal(cuda.labels.cpu(), cpu.labels)
    with pytest.raises(ValueError, match="edges is on cpu but the costs are on cuda"):
        gpucops.multicut(edges, costs.cuda())


def test_energy_and_gaec_agree_with_bioimage_cpp():
    """The sign convention, checked against the peer itself (bioimage-cpp is in the ``bench``
    extra only, so CI skips this)."""
    bioimage_graph = pytest.importorskip("bioimage_cpp.graph")
    from bioimage_cpp.graph import multicut as peer

    generator = torch.Generator().manual_seed(1)
    pairs = torch.combinations(torch.arange(40), 2)
    edges = pairs[torch.randperm(pairs.shape[0], generator=generator)[:200]]
    costs = torch.randn(200, generator=generator, dtype=torch.float64)
    graph = bioimage_graph.undirected_graph(40)
    graph.insert_edges(edges.numpy().astype("uint64"))
    # bioimage-cpp numbers its edges by its own order: look each pair up
    order = torch.tensor([graph.find_edge(int(u), int(v)) for u, v in edges.tolist()])
    peer_costs = torch.empty_like(costs)
    peer_costs[order] = costs
    objective = peer.MulticutObjective(graph, peer_costs.numpy())
    gaec = torch.from_numpy(peer.GreedyAdditiveMulticut().optimize(objective).astype("int64"))
    ours = gpucops.multicut(edges, costs, method="sequential")
    assert gpucops.multicut_energy(edges, costs, gaec).item() == pytest.approx(
        objective.energy(gaec.numpy()), abs=1e-9
    )
    assert ours.energy.item() == pytest.approx(objective.energy(ours.labels.numpy()), abs=1e-9)
    assert ours.energy.item() == pytest.approx(objective.energy(gaec.numpy()), abs=1e-9)
