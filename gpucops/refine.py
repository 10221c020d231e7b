"""Boundary refinement after the parallel contraction: rounds of independent single-node moves.

After contraction every node has a segment: one per stuff class and image, one per thing
cluster; an edge is cut exactly when its end-points lie in different segments. Moving node u
from its segment a (class k_a) into a neighbouring segment b (class k_b) changes the objective by

    Δ(u → b) = C_u(k_b) − C_u(k_a) + W(u, a) − W(u, b),

W(u, s) = the summed weights of u's edges into segment s. Each round, every node on a segment
boundary computes its best move (lowest Δ, then lowest segment key); a node with Δ < 0 moves if
its (Δ, index) is lower than that of every neighbour that also wants to move, so the lowest
wanting node of every neighbourhood moves and each round makes progress. No two moving nodes are
adjacent, so each Δ stays exact and the objective falls by their sum: it never rises, and the
loop ends. Moves only enter existing segments, so stuff keeps one segment per class and image.
By default (:func:`refine_labeling`) a node only moves between segments of its own thing class:
instance boundaries move, no node changes class.

The greedy contraction fixes a node's cluster once and for all; these moves let boundary nodes
that an early merge put on the wrong side change sides. Sums are deterministic (sorted pair
coalescing, as the contraction's), so batch = singles and host = GPU still hold.
"""

from __future__ import annotations

import torch

from .contraction_kernels import ContractionKernels
from .labeling import segment_keys
from .parallel import _coalesce_edges  # the contraction's deterministic pair sums

__all__ = ["refine_labeling", "refine_segments"]


def refine_segments(
    costs: torch.Tensor,
    edges: torch.Tensor,
    weights: torch.Tensor,
    classes: torch.Tensor,
    keys: torch.Tensor,
    num_keys: int,
    max_rounds: int,
    kernels: ContractionKernels | None = None,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """Rounds of independent improving node moves (see the module docstring).

    Args:
        costs: ``[N, K]`` float64 class costs (forbidden classes +inf).
        edges: ``[E, 2]`` int64, no self-loops; ``weights`` ``[E]`` float64 (duplicates add up).
        classes, keys: ``[N]`` int64 class and segment key (:func:`segment_keys`) of every node.
        max_rounds: at most this many rounds (0: none).
        kernels: the contraction kernels for the pair sums (None: the torch step, same result).
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
        pairs, summed = _coalesce_edges(kernels, pairs, at_weight, identity, len(identity))
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
    kernels: ContractionKernels | None = None,
    split_images: bool | None = None,
    change_classes: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, list[int]]:
    """:func:`refine_segments` of a contraction's result, image by image on the CPU (the working
    set stays in cache; the decisions are the same, since every move is local to an image).

    Args:
        costs: ``[N, K]`` float64; ``edges [E, 2]``, ``weights [E]`` float64 (within images);
        classes, clusters: ``[N]`` the contraction's result; ``image_index [N]``.
        split_images: None = on the CPU only.
        change_classes: False (default): a node only moves between segments of its own thing
            class, so every node keeps its class — the instance boundaries move, the semantic
            labeling stays. Such a move's Δ involves only edges between nodes of that class, so
            it runs on those edges alone. True: any neighbouring segment (the node adopts its
            class); better objectives, but on trained-network costs the class changes lowered PQ
            (benchmarks/RESULTS.md).
    Returns:
        classes and clusters ``[N]`` (a stuff node's cluster is its segment key ≥ N; only the
        class matters for stuff), and the moves of each round summed over images.
    """
    if not change_classes:
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
            unique.numel(), max_rounds, kernels,
        )  # fmt: skip
        classes[nodes], keys[nodes] = new_classes, unique[new_keys]
        rounds.append(moves)
    length = max(map(len, rounds), default=0)
    merged = [sum(r[i] for r in rounds if i < len(r)) for i in range(length)]
    return classes, keys, merged
