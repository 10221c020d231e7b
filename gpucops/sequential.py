"""The sequential reference solver: greedy edge contraction (supplementary Algorithm 2).

The algorithm lives in one readable C++ file, ``gpucops/csrc/sequential_amwc.cpp``, built for the
host on first use (see :mod:`gpucops._hostbuild`). This module is its thin ctypes front.
"""

from __future__ import annotations

import ctypes

import torch

from ._hostbuild import DEFAULT_FLAGS, load_library
from .coalesce import coalesce_edges

__all__ = ["contract_sequential"]

_int64 = ctypes.c_int64
_pointer = ctypes.c_void_p


def _library(rescore_all: bool) -> ctypes.CDLL:
    flags = (*DEFAULT_FLAGS, "-DGPUCOPS_RESCORE_ALL") if rescore_all else DEFAULT_FLAGS
    library = load_library("gpucops.csrc", "sequential_amwc.cpp", flags)
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
