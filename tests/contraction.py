"""The parallel contraction called as the tests call it: before the stuff merge, on the CPU."""

from __future__ import annotations

import torch

from gpucops.solver import DEFAULTS, ParallelOptions
from gpucops.solver.backend import steps_for
from gpucops.solver.parallel import contract_parallel
from gpucops.solver.rounds import ContractionResult
from gpucops.solver.steps import TorchSteps

HOST = torch.device("cpu")


def contract(
    node_costs: torch.Tensor,
    edges: torch.Tensor,
    edge_costs: torch.Tensor,
    image_index: torch.Tensor,
    num_images: int,
    *,
    label_mask: torch.Tensor | None = None,
    tiles=None,
    top_fraction: float | None = DEFAULTS.top_fraction,
    tail: int = DEFAULTS.tail,
    tail_edges: int = DEFAULTS.tail_edges,
    use_kernels: bool = True,
    **hooks,
) -> ContractionResult:
    """:func:`contract_parallel` with the solver's default band and tail, on the host kernels or
    (with ``use_kernels=False``) the torch steps; ``hooks``: ``coalesced``, ``split_images``."""
    steps = steps_for(HOST) if use_kernels else TorchSteps()
    options = ParallelOptions(top_fraction=top_fraction, tail=tail, tail_edges=tail_edges)
    return contract_parallel(
        node_costs, edges, edge_costs, image_index, num_images, label_mask, tiles, options, steps,
        **hooks,
    )  # fmt: skip


def assert_same_contraction(got: ContractionResult, expected: ContractionResult) -> None:
    """Bit-identical classes and clusters, and the same merges in every round."""
    assert torch.equal(got.classes, expected.classes)
    assert torch.equal(got.clusters, expected.clusters)
    assert got.merges_per_round == expected.merges_per_round
    assert got.tile_merges == expected.tile_merges
    assert got.tail_merges == expected.tail_merges
