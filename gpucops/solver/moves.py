"""Boundary refinement after a solve: rounds of independent single-node moves within a class.

:func:`refine` is a post-step, not part of :func:`gpucops.solve`: it never lowered PQ and gained
little on the benchmark problems (``docs/solver.md``), so the solver's default labeling stays the
contraction's. After a solve every node has a segment: one per stuff class and image, one per thing
cluster; an edge is cut exactly when its end-points lie in different segments. Moving node u
from its segment a (class k_a) into a neighbouring segment b (class k_b) changes the objective by

    Δ(u → b) = C_u(k_b) − C_u(k_a) + W(u, a) − W(u, b),

W(u, s) = the summed weights of u's edges into segment s. Each round, every node on a segment
boundary computes its best move (lowest Δ, then lowest segment key); a node with Δ < 0 moves if
its (Δ, index) is lower than that of every neighbour that also wants to move, so the lowest
wanting node of every neighbourhood moves and each round makes progress. No two moving nodes are
adjacent, so each Δ stays exact and the objective falls by their sum: it never rises, and the
loop ends. Moves only enter existing segments of the node's own thing class: instance boundaries
move, no node changes class, stuff never moves. (Moves across classes lift the objective past the
sequential greedy's, but lowered PQ on trained-network costs; tried, not adopted.)

The greedy contraction fixes a node's cluster once and for all; these moves let boundary nodes
that an early merge put on the wrong side change sides. Sums are deterministic (sorted pair
coalescing, as the contraction's), so batch = singles and host = GPU still hold.
"""

from __future__ import annotations

import torch

from .._validate import check_class_labels, check_grid_problem, check_label_mask, check_labels
from ..grid import grid_graph
from ..labeling import PanopticLabeling, compact_segments, segment_keys
from ..objectives import objective_graph_validated
from .backend import steps_for
from .rounds import sum_rounds
from .steps import Steps, TorchSteps

__all__ = ["refine", "refine_labeling", "refine_segments"]


def refine(
    labeling: PanopticLabeling,
    node_costs: torch.Tensor,
    edge_costs: torch.Tensor,
    partitionable: torch.Tensor,
    distances: tuple[int, ...] = (1, 4, 16, 32, 64),
    *,
    rounds: int = 20,
    label_mask: torch.Tensor | None = None,
) -> PanopticLabeling:
    """Move boundary pixels between the thing segments of their class while that lowers the
    objective (see the module docstring); the classes stay.

    Args:
        labeling: a :func:`gpucops.solve` result for the problem (``classes``, ``segments``
            ``[B, H, W]``).
        node_costs, edge_costs, partitionable, distances, label_mask: the problem, as given to
            :func:`gpucops.solve`.
        rounds: at most this many rounds of moves (each round moves at least one node, until
            none can improve).
    Returns:
        The refined :class:`PanopticLabeling` with its objective; ``info`` adds
        ``refine_moves``, the moves of each round.
    """
    node_costs, edge_costs, partitionable, distances = check_grid_problem(
        node_costs, edge_costs, partitionable, distances
    )
    batch, num_classes, height, width = node_costs.shape
    shape, device = (batch, height, width), node_costs.device
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 0:
        raise ValueError(f"rounds must be an integer ≥ 0, got {rounds!r}")
    classes = check_class_labels(labeling.classes, "labeling.classes", shape, num_classes, device)
    segments = check_labels(labeling.segments, "labeling.segments", shape, device)
    nodes, edges, weights, image_index = grid_graph(
        node_costs, edge_costs, distances, sort_edges=False, share_edges=True
    )
    label_mask = check_label_mask(label_mask, batch, num_classes, image_index)
    steps = steps_for(device)
    # segment ids are compact per image: offset them so that every image's are its own
    clusters = image_index * (height * width) + segments.flatten()
    classes, clusters, moves = refine_labeling(
        TorchSteps().input_costs(nodes, label_mask, image_index), edges, weights.double(),
        classes.flatten(), clusters, partitionable, image_index, batch, rounds, steps,
    )  # fmt: skip
    segments = compact_segments(classes, clusters, partitionable, image_index, batch)
    objective = objective_graph_validated(
        nodes, edges, weights, partitionable, classes, segments, image_index, batch,
        cut=steps.edge_cut(edges, segments),
    )  # fmt: skip
    info = {**labeling.info, "refine_moves": moves}
    return PanopticLabeling(classes.view(shape), segments.view(shape), objective, info)


def refine_segments(
    costs: torch.Tensor,
    edges: torch.Tensor,
    weights: torch.Tensor,
    classes: torch.Tensor,
    keys: torch.Tensor,
    num_keys: int,
    max_rounds: int,
    steps: Steps,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Rounds of independent improving node moves (see the module docstring).

    Args:
        costs: ``[N, K]`` float64 class costs (forbidden classes +inf).
        edges: ``[E, 2]`` int64, no self-loops; ``weights`` ``[E]`` float64 (duplicates add up).
        classes, keys: ``[N]`` int64 class and segment key (:func:`segment_keys`) of every node.
        max_rounds: at most this many rounds (0: none).
        steps: the implementation of the pair sums (the contraction's deterministic coalescing).
    Returns:
        classes, keys ``[N]`` after the moves, and the moves of each round.
    """
    num_nodes = costs.shape[0]
    device = costs.device
    # both directions of every edge, grouped by source node (CSR), so a round only touches the
    # edges of the nodes it looks at
    source, order = torch.sort(torch.cat([edges[:, 0], edges[:, 1]]), stable=True)
    neighbour = torch.cat([edges[:, 1], edges[:, 0]])[order]
    weight = torch.cat([weights, weights])[order]
    degree = torch.bincount(source, minlength=num_nodes)
    start = torch.cumsum(degree, 0) - degree

    def incident(nodes: torch.Tensor) -> torch.Tensor:
        """Positions in the CSR arrays of all edges of ``nodes``."""
        counts = degree[nodes]
        offsets = torch.cumsum(counts, 0) - counts
        within = torch.arange(int(counts.sum()), device=device) - offsets.repeat_interleave(counts)
        return start[nodes].repeat_interleave(counts) + within

    identity = torch.arange(num_nodes + num_keys, device=device)
    key_class = torch.zeros(num_keys, dtype=torch.int64, device=device)
    key_class[keys] = classes  # a segment's class never changes: moves adopt it
    # nodes whose moves are (re)computed: at first those on a segment boundary (a node whose
    # edges all stay inside its segment has no move), then those next to a change — any other
    # node's Δs are those of the last round, where it had no improving move
    across = keys[edges[:, 0]] != keys[edges[:, 1]]
    boundary = torch.zeros(num_nodes, dtype=torch.bool, device=device)
    boundary[edges[across].flatten()] = True
    active = boundary.nonzero().flatten()
    moves_per_round: list[int] = []
    for _ in range(max_rounds):
        if active.numel() == 0:
            break
        # W(u, s) for every active node u and segment s it touches, its own included
        at = incident(active)
        at_source, at_neighbour, at_weight = source[at], neighbour[at], weight[at]
        pairs = torch.stack([at_source, num_nodes + keys[at_neighbour]], 1)
        pairs, summed = steps.coalesce(pairs, at_weight, identity, len(identity))
        node, key = pairs[:, 0], pairs[:, 1] - num_nodes
        own_pair = key == keys[node]
        own = torch.zeros(num_nodes, dtype=torch.float64, device=device)
        own[node[own_pair]] = summed[own_pair]
        node, key, summed = node[~own_pair], key[~own_pair], summed[~own_pair]
        delta = costs[node, key_class[key]] - costs[node, classes[node]] + own[node] - summed
        # each node's best move: lowest Δ, then lowest key
        best = torch.full((num_nodes,), float("inf"), dtype=torch.float64, device=device)
        best.scatter_reduce_(0, node, delta, reduce="amin")
        improving = (delta == best[node]) & (delta < 0)
        target = torch.full((num_nodes,), num_keys, dtype=torch.int64, device=device)
        target.scatter_reduce_(0, node[improving], key[improving], reduce="amin")
        wanting = (target < num_keys).nonzero().flatten()
        if wanting.numel() == 0:
            break
        # independent moves: better than every neighbour that also wants to move (lower Δ, then
        # lower node index)
        gain = torch.full((num_nodes,), float("inf"), dtype=torch.float64, device=device)
        gain[wanting] = best[wanting]
        around = incident(wanting)
        mine, theirs = source[around], neighbour[around]
        rival = torch.full((num_nodes,), float("inf"), dtype=torch.float64, device=device)
        rival.scatter_reduce_(0, mine, gain[theirs], reduce="amin")
        tied = gain[theirs] == gain[mine]
        rival_index = torch.full((num_nodes,), num_nodes, dtype=torch.int64, device=device)
        rival_index.scatter_reduce_(0, mine[tied], theirs[tied], reduce="amin")
        wins = (gain[wanting] < rival[wanting]) | (
            (gain[wanting] == rival[wanting]) & (wanting < rival_index[wanting])
        )
        moving = wanting[wins]
        moves_per_round.append(int(moving.numel()))
        keys = keys.clone()
        keys[moving] = target[moving]
        classes = classes.clone()
        classes[moving] = key_class[target[moving]]
        # next: the blocked, the moved and their neighbours
        mark = torch.zeros(num_nodes, dtype=torch.bool, device=device)
        mark[wanting] = True
        mark[neighbour[incident(moving)]] = True
        active = mark.nonzero().flatten()
    return classes, keys, moves_per_round


def refine_labeling(
    costs: torch.Tensor,
    edges: torch.Tensor,
    weights: torch.Tensor,
    classes: torch.Tensor,
    clusters: torch.Tensor,
    partitionable: torch.Tensor,
    image_index: torch.Tensor,
    num_images: int,
    max_rounds: int,
    steps: Steps,
    split_images: bool | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """:func:`refine_segments` of a labeling, on the edges between nodes of one thing class
    (a within-class move's Δ involves only those), image by image on the CPU (the working set
    stays in cache; the decisions are the same, since every move is local to an image).

    Args:
        costs: ``[N, K]`` float64; ``edges [E, 2]``, ``weights [E]`` float64 (within images);
        classes, clusters: ``[N]`` int64 class and cluster of every node (thing clusters: ids in
            ``[0, N)``, unique across images); ``image_index [N]``.
        split_images: None = on the CPU only.
    Returns:
        classes and clusters ``[N]`` (a stuff node's cluster is its segment key ≥ N; only the
        class matters for stuff), and the moves of each round summed over images.
    """
    u, v = edges[:, 0], edges[:, 1]
    same = (classes[u] == classes[v]) & partitionable[classes[u]]
    edges, weights = edges[same], weights[same]
    keys, _ = segment_keys(classes, clusters, partitionable, image_index, num_images)
    if split_images is None:
        split_images = costs.device.type == "cpu"
    groups = (
        [torch.arange(costs.shape[0], device=costs.device)]
        if not split_images or num_images <= 1
        else [(image_index == b).nonzero().flatten() for b in range(num_images)]
    )
    position = torch.empty_like(keys)
    edge_image = image_index[edges[:, 0]] if len(groups) > 1 else None
    rounds: list[list[int]] = []
    classes, keys = classes.clone(), keys.clone()
    for b, nodes in enumerate(groups):
        if nodes.numel() == 0:
            continue
        position[nodes] = torch.arange(nodes.numel(), device=keys.device)
        local_edges, local_weights = edges, weights
        if edge_image is not None:
            selected = edge_image == b
            local_edges, local_weights = edges[selected], weights[selected]
        # local key numbers in the keys' own order, so ties break as in a single-image solve
        unique, local_keys = torch.unique(keys[nodes], return_inverse=True)
        new_classes, new_keys, moves = refine_segments(
            costs[nodes], position[local_edges], local_weights, classes[nodes], local_keys,
            unique.numel(), max_rounds, steps,
        )  # fmt: skip
        classes[nodes], keys[nodes] = new_classes, unique[new_keys]
        rounds.append(moves)
    return classes, keys, sum_rounds(rounds)
