"""pytest-benchmark suite of the AMWC layer's training step: forward (costs, batched solve,
alignment, PQ surrogate) and backward (B·N perturbed multiway cuts in one solver call, then the
gradients), as ``benchmarks/layer.py`` times them.

Shapes: on CUDA Cityscapes fine-tuning's batch (24 crops of 512×1024 at stride 4: 128×256); on
the CPU a batch of 2 at 64×128 (the same code path; the full batch takes ~17 s a step on 2 cores).
Quality: the forward's labeling against the sequential greedy on the very costs it solved
(training mode, cost dropout drawn from the seed), worst of the first two images; the backward
must give finite gradients that are not all zero (a solver that returned the forward's labeling
for every perturbation would give zero).
"""

from __future__ import annotations

import pytest
import torch
from suite import CITYSCAPES_DISTANCES, DEVICES, load_script

from gpucops import solve
from gpucops.objectives import improvement_ratio, trivial_objective

SHAPES = {"cpu": (2, (64, 128)), "cuda": (24, (128, 256))}  # batch, stride-4 grid
SAMPLES = 5  # N perturbations per image, COPS' setting
REFERENCE_IMAGES = 2  # the sequential reference of the whole CUDA batch would take ~20 s


@pytest.fixture
def step(device, smoke):
    batch, size = (2, (16, 24)) if smoke else SHAPES[device]
    distances = (1, 4) if smoke else CITYSCAPES_DISTANCES
    classes = 5 if smoke else 19
    return load_script("layer").training_step(device, batch, size, classes, distances, SAMPLES)


@pytest.mark.parametrize("device", DEVICES)
def test_layer_forward(timer, step, device):
    out, _, _ = timer(lambda: step.forward(seed=0), rounds=5)
    # the first images' costs, on the CPU: each image of the batch is solved as it would be alone
    costs = (c[:REFERENCE_IMAGES].detach().cpu() for c in (out.node_costs, out.edge_costs))
    inputs = (*costs, step.layer.partitionable.cpu(), step.layer.distances)
    reference = solve(*inputs, method="sequential").objective
    objective = out.labeling.objective[:REFERENCE_IMAGES].cpu()
    quality = improvement_ratio(trivial_objective(*inputs), objective, reference)
    key = f"layer/forward-{device}"
    timer.check(key, float(quality.min()), objective=float(out.labeling.objective.sum()))


@pytest.mark.parametrize("device", DEVICES)
def test_layer_backward(timer, step, device):
    last = {}

    def setup() -> tuple[tuple, dict]:  # untimed: the forward whose loss the timed call gets
        _, loss, last["logits"] = step.forward(seed=0)
        return (loss,), {}

    timer(lambda loss: loss.backward(), rounds=5, setup=setup)
    gradients = [logit.grad for logit in last["logits"]]
    norms = [float(g.norm()) for g in gradients]
    timer.record(semantic_grad_norm=norms[0], affinity_grad_norm=norms[1])
    assert all(torch.isfinite(g).all() for g in gradients), norms
    assert norms[0] > 0 and norms[1] > 0, norms
