"""The differentiable AMWC layer of COPS (arXiv 2106.03188; code: aabbas90/COPS, AMWCBackward).

Forward: solve the batch of AMWC problems (no gradient), align the predicted segments with the
ground truth (:mod:`gpucops.matching`, no gradient), and return the aligned one-hot ``P [B, S, H,
W]`` through :func:`panoptic_one_hot`, whose backward is the official perturbation rule:

* per image, a multiway cut (MWC) whose labels are the aligned channels (predicted segments and
  ground-truth-only channels, each with the node costs of its class) plus every class without a
  channel; its node costs are perturbed by ``λ_n · dL/dP`` (0 for class-only labels) for N values
  ``λ_n ~ U[λ_min, λ_max]``; edge costs stay as in the forward;
* all B·N perturbed problems go to the solver **in one batched call** (an MWC is an AMWC whose
  labels are all stuff; images with fewer labels forbid the padding ones through
  ``label_mask``);
* ``dL/d node_costs = mean_n (onehot(class of the MWC label) − onehot(AMWC class)) / λ_n`` and
  ``dL/d edge_costs = mean_n (cut_MWC − cut_AMWC) / λ_n``, zero at void pixels and at edges
  touching one.

:class:`AMWCLayer` holds the learnable cost scalars (``a_s, b_s, a_d, b_d``), the cost dropout
and the perturbation settings, and builds the costs with :mod:`gpucops.kernels`.
:func:`amwc_labels` is the ablation's layer (supplementary A.3): class and cut labels out,
the AMWC itself perturbed in the backward.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ._validate import check_labels
from .grid import both_ends_maps, cut_maps
from .kernels import edge_costs_from_logits, node_costs_from_logits, perturb_costs
from .labeling import PanopticLabeling
from .matching import AlignedSegments, align_segments
from .solver import solve

__all__ = [
    "AMWCLayer",
    "LayerOutput",
    "Perturbation",
    "amwc_labels",
    "draw_lambdas",
    "mwc_gradient",
    "panoptic_one_hot",
]


@dataclass(frozen=True)
class Perturbation:
    """Settings of the backward: N values λ ~ U[low, high] drawn from ``seed``, the grid's
    distances, class kinds, the solver, and the void mask (True = no gradient there)."""

    partitionable: torch.Tensor  # [K] bool
    distances: tuple[int, ...]
    lambdas: torch.Tensor  # [N] float
    void: torch.Tensor | None = None  # [B, H, W] bool
    method: str = "parallel"
    backend: str = "auto"

    def solve(
        self,
        node_costs: torch.Tensor,
        edge_costs: torch.Tensor,
        partitionable: torch.Tensor | None = None,
        label_mask: torch.Tensor | None = None,
    ) -> PanopticLabeling:
        """:func:`gpucops.solve` of detached costs with these settings (``partitionable``:
        None = the classes' own)."""
        return solve(
            node_costs.detach(),
            edge_costs.detach(),
            self.partitionable if partitionable is None else partitionable,
            self.distances,
            method=self.method,
            backend=self.backend,
            label_mask=label_mask,
        )


def draw_lambdas(
    num_samples: int, low: float, high: float, seed: int, device: torch.device | str = "cpu"
) -> torch.Tensor:
    """``[num_samples]`` float32 λ ~ U[low, high] from a generator seeded with ``seed``."""
    if num_samples < 1 or not 0 < low <= high < math.inf:
        raise ValueError(
            f"lambda_range and num_samples: need num_samples ≥ 1 and finite 0 < λ_min ≤ λ_max, "
            f"got {num_samples}, [{low}, {high}]"
        )
    generator = torch.Generator().manual_seed(seed)
    return (low + (high - low) * torch.rand(num_samples, generator=generator)).to(device)


def _check_ground_truth(
    gt_classes: object, gt_segments: object, cost_shape: torch.Size
) -> tuple[torch.Tensor, torch.Tensor]:
    """``gt_classes`` and ``gt_segments`` ``[B, H, W]`` int64 on the costs' grid, classes in
    ``[−1, K)`` (a class id ≥ K failed deep inside the alignment before)."""
    batch, num_classes, height, width = cost_shape
    shape = (batch, height, width)
    classes = check_labels(gt_classes, "gt_classes", shape, None)
    segments = check_labels(gt_segments, "gt_segments", shape, None)
    if classes.numel() and bool(((classes < -1) | (classes >= num_classes)).any()):
        raise ValueError(f"gt_classes must lie in [-1, {num_classes}) (−1 = none)")
    return classes, segments


def _masked(gradient: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    return gradient if keep is None else gradient * keep


def _finish(
    node_grad: torch.Tensor,
    edge_grad: torch.Tensor,
    perturbation: Perturbation,
    node_costs: torch.Tensor,
    edge_costs: torch.Tensor,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero the gradients at void pixels and at edges touching one; cast to the costs' types."""
    if perturbation.void is not None:
        keep = ~perturbation.void
        node_grad = _masked(node_grad, keep.unsqueeze(1))
        edge_grad = _masked(edge_grad, both_ends_maps(keep, perturbation.distances))
    return node_grad.to(node_costs.dtype), edge_grad.to(edge_costs.dtype)


def _mean_difference(
    perturbed: torch.Tensor, reference: torch.Tensor, lambdas: torch.Tensor
) -> torch.Tensor:
    """``mean_n (perturbed[b·N + n] − reference[b]) / λ_n`` → ``[B, ...]``."""
    num = lambdas.numel()
    perturbed = perturbed.view(-1, num, *perturbed.shape[1:])
    scale = lambdas.view(1, num, *([1] * (perturbed.dim() - 2)))
    return ((perturbed - reference.unsqueeze(1)) / scale).mean(dim=1)


def _mwc_labels(aligned: AlignedSegments, num_classes: int) -> torch.Tensor:
    """``[B, L]`` class of every MWC label (−1: padding): the valid channels, then each class
    that has no channel in that image."""
    rows = []
    for channel_classes in aligned.classes.tolist():
        used = {c for c in channel_classes if c >= 0}
        rows.append([c for c in channel_classes if c >= 0])
        rows[-1] += [c for c in range(num_classes) if c not in used]
    width = max(map(len, rows), default=0)
    table = torch.full((len(rows), width), -1, dtype=torch.int64)
    for b, row in enumerate(rows):
        table[b, : len(row)] = torch.tensor(row, dtype=torch.int64)
    return table.to(aligned.classes.device)


def mwc_gradient(
    node_costs: torch.Tensor,
    edge_costs: torch.Tensor,
    labeling: PanopticLabeling,
    aligned: AlignedSegments,
    grad_one_hot: torch.Tensor,
    perturbation: Perturbation,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The official perturbation gradient for the AMWC costs (see the module docstring).

    Args:
        node_costs: ``[B, K, H, W]`` and edge_costs ``[B, 2·|D|, H, W]``: the forward's costs.
        labeling: the forward's AMWC solution.
        aligned: the channels of ``P``; ``grad_one_hot``: ``dL/dP [B, S, H, W]``.
    Returns:
        ``dL/d node_costs``, ``dL/d edge_costs``.
    """
    batch, num_classes, height, width = node_costs.shape
    if batch == 0:
        return torch.zeros_like(node_costs), torch.zeros_like(edge_costs)
    lambdas = perturbation.lambdas.to(node_costs.device, torch.float32)
    num = lambdas.numel()
    label_class = _mwc_labels(aligned, num_classes)  # [B, L]
    num_labels = label_class.shape[1]
    index = label_class.clamp(min=0).view(batch, num_labels, 1, 1).expand(-1, -1, height, width)
    # padding labels get class 0's costs: finite, and forbidden by the label mask anyway
    mwc_costs = node_costs.detach().float().gather(1, index)
    # the valid channels come first, in channel order, so dL/dP lines up with the first labels
    valid = (aligned.classes >= 0).view(batch, -1, 1, 1)
    delta = torch.zeros_like(mwc_costs)
    delta[:, : grad_one_hot.shape[1]] = grad_one_hot.float() * valid
    mwc = perturbation.solve(
        perturb_costs(mwc_costs, delta, lambdas),
        edge_costs.float().repeat_interleave(num, dim=0),
        torch.zeros(num_labels, dtype=torch.bool, device=node_costs.device),
        (label_class < 0).repeat_interleave(num, dim=0),
    )
    labels = mwc.classes  # [B·N, H, W], an MWC label per pixel
    classes = label_class.repeat_interleave(num, dim=0).gather(1, labels.flatten(1))
    perturbed_one_hot = F.one_hot(classes.view_as(labels), num_classes).permute(0, 3, 1, 2)
    forward_one_hot = F.one_hot(labeling.classes, num_classes).permute(0, 3, 1, 2)
    node_grad = _mean_difference(perturbed_one_hot.float(), forward_one_hot.float(), lambdas)
    edge_grad = _mean_difference(
        cut_maps(labels, perturbation.distances),
        cut_maps(labeling.segments, perturbation.distances),
        lambdas,
    )
    # The MWC of an unperturbed image need not reproduce the AMWC forward (instances of a class
    # share label costs, ties go to the first), so the official rule leaves a bias where dL/dP is
    # 0; an image without incoming gradient gets none.
    active = (grad_one_hot.flatten(1) != 0).any(dim=1).view(batch, 1, 1, 1)
    return _finish(node_grad * active, edge_grad * active, perturbation, node_costs, edge_costs)


class _PanopticOneHot(torch.autograd.Function):
    @staticmethod
    def forward(ctx, node_costs, edge_costs, labeling, aligned, perturbation):
        ctx.save_for_backward(node_costs, edge_costs)
        ctx.problem = (labeling, aligned, perturbation)
        return aligned.one_hot(labeling.segments, aligned.pred)

    @staticmethod
    def backward(ctx, grad_one_hot):
        node_costs, edge_costs = ctx.saved_tensors
        labeling, aligned, perturbation = ctx.problem
        node_grad, edge_grad = mwc_gradient(
            node_costs, edge_costs, labeling, aligned, grad_one_hot, perturbation
        )
        return node_grad, edge_grad, None, None, None


def panoptic_one_hot(
    node_costs: torch.Tensor,
    edge_costs: torch.Tensor,
    labeling: PanopticLabeling,
    aligned: AlignedSegments,
    perturbation: Perturbation,
) -> torch.Tensor:
    """The aligned predicted one-hot ``P [B, S, H, W]`` (float32) of ``labeling``, differentiable
    in the costs through :func:`mwc_gradient`."""
    return _PanopticOneHot.apply(node_costs, edge_costs, labeling, aligned, perturbation)


class _AMWCLabels(torch.autograd.Function):
    @staticmethod
    def forward(ctx, node_costs, edge_costs, perturbation):
        labeling = perturbation.solve(node_costs, edge_costs)
        ctx.save_for_backward(node_costs, edge_costs)
        ctx.problem = (labeling, perturbation)
        num_classes = node_costs.shape[1]
        one_hot = F.one_hot(labeling.classes, num_classes).permute(0, 3, 1, 2).float()
        return one_hot, cut_maps(labeling.segments, perturbation.distances)

    @staticmethod
    def backward(ctx, grad_classes, grad_cuts):
        node_costs, edge_costs = ctx.saved_tensors
        labeling, perturbation = ctx.problem
        lambdas = perturbation.lambdas.to(node_costs.device, torch.float32)
        perturbed = perturbation.solve(
            perturb_costs(node_costs.detach().float(), grad_classes.float(), lambdas),
            perturb_costs(edge_costs.detach().float(), grad_cuts.float(), lambdas),
        )
        num_classes = node_costs.shape[1]
        node_grad = _mean_difference(
            F.one_hot(perturbed.classes, num_classes).permute(0, 3, 1, 2).float(),
            F.one_hot(labeling.classes, num_classes).permute(0, 3, 1, 2).float(),
            lambdas,
        )
        edge_grad = _mean_difference(
            cut_maps(perturbed.segments, perturbation.distances),
            cut_maps(labeling.segments, perturbation.distances),
            lambdas,
        )
        return (*_finish(node_grad, edge_grad, perturbation, node_costs, edge_costs), None)


def amwc_labels(
    node_costs: torch.Tensor, edge_costs: torch.Tensor, perturbation: Perturbation
) -> tuple[torch.Tensor, torch.Tensor]:
    """The ablation's layer (supplementary A.3): class one-hot ``x [B, K, H, W]`` and cut
    indicators ``y [B, 2·|D|, H, W]`` of the AMWC solution, differentiable by perturbing the
    AMWC costs themselves (``c + λ_n · dL/d(x, y)``, B·N problems in one solver call)."""
    return _AMWCLabels.apply(node_costs, edge_costs, perturbation)


@dataclass
class LayerOutput:
    """What :class:`AMWCLayer` returns: the solution, and with a ground truth the aligned
    one-hots and channel classes the PQ surrogate needs."""

    labeling: PanopticLabeling
    node_costs: torch.Tensor
    edge_costs: torch.Tensor
    prediction: torch.Tensor | None = None  # P [B, S, H, W], differentiable
    target: torch.Tensor | None = None  # G [B, S, H, W]
    channel_classes: torch.Tensor | None = None  # [B, S], −1 padding


class AMWCLayer(nn.Module):
    """Costs from logits, the AMWC solve, and the differentiable aligned panoptic one-hot.

    Args:
        partitionable: ``[K]`` bool, True for thing classes.
        distances: D of the affinity maps (relative to the logits' grid).
        lambda_range: (λ_min, λ_max) of the perturbation (Cityscapes (1, 5000), COCO (1000, 5000)).
        num_samples: N perturbations per image.
        dropout: cost dropout probability in training (0 in evaluation).
        method, backend: solver settings (see :func:`gpucops.solve`).
    """

    def __init__(
        self,
        partitionable: torch.Tensor,
        distances: tuple[int, ...],
        lambda_range: tuple[float, float] = (1.0, 5000.0),
        num_samples: int = 5,
        dropout: float = 0.1,
        method: str = "parallel",
        backend: str = "auto",
    ):
        super().__init__()
        self.register_buffer("partitionable", torch.as_tensor(partitionable, dtype=torch.bool))
        self.distances = tuple(distances)
        draw_lambdas(num_samples, *lambda_range, seed=0)  # checks the settings
        self.lambda_range, self.num_samples = lambda_range, num_samples
        self.dropout, self.method, self.backend = dropout, method, backend
        self.node_scale = nn.Parameter(torch.ones(()))
        self.node_bias = nn.Parameter(torch.zeros(()))
        self.edge_scales = nn.Parameter(torch.ones(len(self.distances)))
        self.edge_biases = nn.Parameter(torch.zeros(len(self.distances)))

    def costs(
        self, semantic_logits: torch.Tensor, affinity_logits: torch.Tensor, seed: int = 0
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Node and edge costs; cost dropout in training, seeded ``2·seed`` and ``2·seed + 1``."""
        dropout = self.dropout if self.training else 0.0
        node_costs = node_costs_from_logits(
            semantic_logits, self.node_scale, self.node_bias, dropout, 2 * seed
        )
        edge_costs = edge_costs_from_logits(
            affinity_logits, self.edge_scales, self.edge_biases, dropout, 2 * seed + 1
        )
        return node_costs, edge_costs

    def perturbation(
        self, void: torch.Tensor | None, seed: int, device: torch.device | str = "cpu"
    ) -> Perturbation:
        """The backward's settings of a step: N values λ drawn from ``seed``, ``void``."""
        lambdas = draw_lambdas(self.num_samples, *self.lambda_range, seed, device)
        return Perturbation(
            self.partitionable, self.distances, lambdas, void, self.method, self.backend
        )

    def labels(
        self,
        semantic_logits: torch.Tensor,
        affinity_logits: torch.Tensor,
        void: torch.Tensor | None = None,
        seed: int = 0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """The ablation's outputs (supplementary A.3, :func:`amwc_labels`): class one-hot
        ``[B, K, H, W]`` and cut indicators ``[B, 2·|D|, H, W]`` of the AMWC solution of the
        logits' costs (cost dropout and λ draw from ``seed``, as :meth:`forward`)."""
        node_costs, edge_costs = self.costs(semantic_logits, affinity_logits, seed)
        return amwc_labels(node_costs, edge_costs, self.perturbation(void, seed, node_costs.device))

    def forward(
        self,
        semantic_logits: torch.Tensor,
        affinity_logits: torch.Tensor,
        gt_classes: torch.Tensor | None = None,
        gt_segments: torch.Tensor | None = None,
        void: torch.Tensor | None = None,
        seed: int = 0,
    ) -> LayerOutput:
        """Solve; with a ground truth (``gt_classes``, ``gt_segments`` ``[B, H, W]``, −1 = none)
        also align and return the differentiable ``P`` with its target ``G``. ``void [B, H, W]``
        bool: pixels without gradient and with weight 0 in the IoU. ``seed`` drives the cost
        dropout and the λ draw, so a step is reproducible."""
        node_costs, edge_costs = self.costs(semantic_logits, affinity_logits, seed)
        perturbation = self.perturbation(void, seed, node_costs.device)
        labeling = perturbation.solve(node_costs, edge_costs)
        output = LayerOutput(labeling, node_costs, edge_costs)
        if gt_classes is None or gt_segments is None:
            return output
        gt_classes, gt_segments = _check_ground_truth(gt_classes, gt_segments, node_costs.shape)
        weights = torch.ones_like(gt_classes, dtype=torch.float32)
        if void is not None:
            weights = weights.masked_fill(void, 0.0)
        aligned = align_segments(
            labeling.classes, labeling.segments, gt_classes, gt_segments, weights
        )
        output.prediction = panoptic_one_hot(
            node_costs, edge_costs, labeling, aligned, perturbation
        )
        output.target = aligned.one_hot(gt_segments, aligned.gt)
        output.channel_classes = aligned.classes
        return output
