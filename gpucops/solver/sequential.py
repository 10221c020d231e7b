"""The sequential reference solver: greedy edge contraction (supplementary Algorithm 2).

The algorithm lives in one readable C++ file, ``gpucops/solver/csrc/sequential_amwc.cpp``, built
for the host on first use (see :mod:`gpucops.solver.hostbuild`). This module is its thin ctypes
front, and the canonical edge list it takes (:func:`coalesce_edges`).
"""

from __future__ import annotations

import ctypes

import torch

from ..segment import segment_sum
from .hostbuild import DEFAULT_FLAGS, load_library

__all__ = ["coalesce_edges", "contract_sequential"]

_int64 = ctypes.c_int64
_pointer = ctypes.c_void_p


def _library(rescore_all: bool) -> ctypes.CDLL:
    flags = (*DEFAULT_FLAGS, "-DGPUCOPS_RESCORE_ALL") if rescore_all else DEFAULT_FLAGS
    library = load_library(
        "gpucops.solver.csrc", "sequential_amwc.cpp", flags, ("gpucops_sequential_amwc",)
    )
    function = library.gpucops_sequential_amwc
    function.restype = _int64
    function.argtypes = [
        _int64,
        _int64,
        _pointer,
        _pointer,
        _pointer,
        _int64,
        _pointer,
        _pointer,
        _pointer,
        _pointer,
        _pointer,
    ]
    return library


def contract_sequential(
    node_costs: torch.Tensor,
    edges: torch.Tensor,
    edge_costs: torch.Tensor,
    image_index: torch.Tensor,
    label_mask: torch.Tensor | None = None,
    rescore_all: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Greedy contraction of validated inputs, before the stuff merge.

    Args:
        node_costs: ``[N, K]`` float (summed in float64).
        edges: ``[E, 2]`` int64, in range, no self-loops, within one image; duplicates are summed.
        edge_costs: ``[E]`` float, positive = attractive.
        image_index: ``[N]`` int64.
        label_mask: ``[num_images, K]`` bool (True = forbidden) or None.
        rescore_all: re-score every edge of a merged cluster, even those whose score provably did
            not change (the plain transcription; same result, slower).
    Returns:
        ``classes [N]`` int64, ``clusters [N]`` int64 (root node of each node's cluster), and the
        number of merges. Tensors are on the CPU.
    """
    num_nodes, num_classes = node_costs.shape
    node_costs = node_costs.detach().to("cpu", torch.float64).contiguous()
    pairs, pair_costs, pair_ids = coalesce_edges(
        edges.to("cpu", torch.int64), edge_costs.detach().to("cpu"), num_nodes
    )
    pairs, pair_costs, pair_ids = pairs.contiguous(), pair_costs.contiguous(), pair_ids.contiguous()
    image_index = image_index.to("cpu", torch.int64).contiguous()
    mask = None if label_mask is None else label_mask.to("cpu", torch.uint8).contiguous()
    clusters = torch.empty(num_nodes, dtype=torch.int64)
    classes = torch.empty(num_nodes, dtype=torch.int64)
    merges = _library(rescore_all).gpucops_sequential_amwc(
        num_nodes,
        num_classes,
        node_costs.data_ptr(),
        None if mask is None else mask.data_ptr(),
        image_index.data_ptr(),
        pairs.shape[0],
        pairs.data_ptr(),
        pair_costs.data_ptr(),
        pair_ids.data_ptr(),
        clusters.data_ptr(),
        classes.data_ptr(),
    )
    return classes, clusters, int(merges)


def coalesce_edges(
    edges: torch.Tensor, edge_costs: torch.Tensor, num_nodes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sum duplicate edges (in either orientation) deterministically.

    Args:
        edges: ``[E, 2]`` int64 node pairs without self-loops.
        edge_costs: ``[E]`` float.
    Returns:
        ``pairs [E', 2]`` int64 with ``pairs[:, 0] < pairs[:, 1]``, ``costs [E']`` float64 (sums in
        input order) and ``ids [E']`` int64, the lowest input edge id of each pair; ordered by id,
        so an edge list without duplicates keeps its order.
    """
    low = torch.minimum(edges[:, 0], edges[:, 1])
    high = torch.maximum(edges[:, 0], edges[:, 1])
    keys, inverse = torch.unique(low * num_nodes + high, return_inverse=True)
    costs = segment_sum(edge_costs.double(), inverse, keys.numel())
    input_ids = torch.arange(edges.shape[0], device=edges.device)
    ids = torch.full_like(keys, edges.shape[0]).scatter_reduce_(
        0, inverse, input_ids, reduce="amin"
    )
    order = torch.argsort(ids)
    keys, costs, ids = keys[order], costs[order], ids[order]
    pairs = torch.stack([keys // num_nodes, keys % num_nodes], dim=1)
    return pairs, costs, ids
