"""Does the AMWC layer's gradient point downhill? A check of the backward before any training.

On fixed synthetic problems (``gpucops.synthetic.make_problem``: scene, ground truth and noisy
costs; one image per problem, K = 19), the layer (:class:`gpucops.layer.AMWCLayer`, evaluation
mode: no cost dropout) solves the costs, the PQ surrogate (``panoptic_quality_loss``, w = 10, the
Cityscapes training thresholds on this grid) scores the solution, and ``backward`` gives
``g = dL/d(node costs, edge costs)``. Then the costs take one step of L2 norm ``t·√(pixels)``
against a direction ``d`` and are solved again; the step *descends* when the surrogate of the
new solution is lower. Directions:

* ``layer``: the layer's gradient g (λ range and N as in the row);
* ``signs``: g with a random sign per entry (same support and norm: is it the direction or only
  *where* g is non-zero that helps?);
* ``gauss``: a Gaussian direction over all costs (the plain random control);
* ``smooth`` (``--smoothed``, small grids only): the gradient of the Gaussian-smoothed loss
  ``L_σ(c) = E_Z L(solve(c + σZ))``, estimated by Monte Carlo with antithetic pairs,
  ``(1/M) Σ_m (L(c + σZ_m) − L(c − σZ_m)) Z_m / (2σ)``; its two halves' cosine is printed so the
  estimate's own noise is visible. This is the direction an exact smoothed loss would give; the
  layer's gradient is compared with it by cosine and by descent rate.

Per row: how often g is non-zero, the descent rate (fraction of problems whose solved loss drops;
a zero step counts as no descent), the ascent rate and the mean change of the solved loss.

    .venv/bin/python benchmarks/gradient_check.py                 # the table of docs/layer.md
    .venv/bin/python benchmarks/gradient_check.py --smoothed 4    # + the smoothed comparison
"""

from __future__ import annotations

import argparse
import statistics
from dataclasses import dataclass

import gpucops  # noqa: F401  (first: idle OpenMP threads sleep, as in the CLI; gpucops/_openmp.py)

# isort: split
import torch

from gpucops.cli import markdown_table, write_json
from gpucops.layer import AMWCLayer
from gpucops.losses import panoptic_quality_loss
from gpucops.synthetic import SyntheticProblem, make_problem

LAMBDA_RANGES = ((1.0, 10.0), (1.0, 50.0), (1.0, 500.0), (1.0, 5000.0), (1000.0, 5000.0))
SAMPLES = (1, 5, 20)
LOSS_WEIGHT = 10.0


@dataclass
class Case:
    """One problem: its costs, ground truth and the PQ surrogate's area thresholds."""

    problem: SyntheticProblem
    thresholds: torch.Tensor

    @property
    def costs(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.problem.node_costs, self.problem.edge_costs


def make_case(seed: int, size: tuple[int, int], distances: tuple[int, ...]) -> Case:
    """A problem noisy enough that its solution has errors to correct (node noise 1.2, edge
    noise 2.5: the default 0.6/1.5 solves almost perfectly at these sizes)."""
    problem = make_problem(1, *size, 19, distances, seed=seed, node_noise=1.2, edge_noise=2.5)
    # the training thresholds (things 200/4, stuff 2048/16 stride-4 pixels) scaled to the grid
    scale = size[0] * size[1] / (128 * 256)
    thresholds = torch.where(problem.partitionable, 50.0 * scale, 128.0 * scale)
    return Case(problem, thresholds)


def layer_for(case: Case, lambdas: tuple[float, float], samples: int) -> AMWCLayer:
    layer = AMWCLayer(case.problem.partitionable, case.problem.distances, lambdas, samples)
    return layer.eval()  # no cost dropout: the check is about the backward alone


def surrogate(
    layer: AMWCLayer, node: torch.Tensor, edge: torch.Tensor, case: Case, seed: int = 0
) -> torch.Tensor:
    """PQ surrogate of the solution of costs ``node``, ``edge`` (the layer's input is
    −costs = logits, its cost scalars are 1 and 0, so its costs are these)."""
    p = case.problem
    out = layer(-node, -edge, p.classes, p.segments, seed=seed)
    return panoptic_quality_loss(
        out.prediction, out.target, out.channel_classes, case.thresholds, loss_weight=LOSS_WEIGHT
    )


def layer_gradient(
    layer: AMWCLayer, case: Case, seed: int
) -> tuple[float, torch.Tensor, torch.Tensor]:
    """The loss at the costs and the layer's gradient ``dL/d(node, edge)``."""
    node, edge = (c.clone().requires_grad_() for c in case.costs)
    loss = surrogate(layer, node, edge, case, seed)
    loss.backward()
    return loss.item(), node.grad, edge.grad


def solved_loss(layer: AMWCLayer, case: Case, node: torch.Tensor, edge: torch.Tensor) -> float:
    with torch.no_grad():
        return surrogate(layer, node, edge, case).item()


def norm(direction) -> float:
    return sum(float(d.square().sum()) for d in direction) ** 0.5


def step_change(
    layer: AMWCLayer, case: Case, loss: float, direction: tuple[torch.Tensor, torch.Tensor],
    step: float,
) -> float:  # fmt: skip
    """Change of the solved loss after a step of L2 norm ``step · √pixels`` against ``d`` (an
    average of ``step`` cost units per pixel, however ``d`` spreads; 0 for a zero direction)."""
    length = norm(direction)
    if length == 0:
        return 0.0
    scale = step * case.costs[0][0, 0].numel() ** 0.5 / length
    node, edge = (c - scale * d for c, d in zip(case.costs, direction, strict=True))
    return solved_loss(layer, case, node, edge) - loss


def random_signs(direction, generator: torch.Generator):
    """``direction`` with a random sign per entry: the same support and norm."""
    return tuple(
        d * (torch.randint(0, 2, d.shape, generator=generator) * 2 - 1).to(d.dtype)
        for d in direction
    )


def gaussian(direction, generator: torch.Generator):
    """A Gaussian direction over all costs (zero where ``direction`` is all zero, so that a
    zero gradient's row compares like with like)."""
    if norm(direction) == 0:
        return direction
    return tuple(torch.randn(d.shape, generator=generator) for d in direction)


def summarise(changes: list[float]) -> dict:
    return {
        "descent": sum(c < 0 for c in changes) / len(changes),
        "ascent": sum(c > 0 for c in changes) / len(changes),
        "mean change": statistics.fmean(changes),
    }


def descent_table(cases: list[Case], step: float, seed: int = 0) -> list[dict]:
    """One row per (λ range, N): the layer's gradient and the two random controls."""
    rows = []
    for lambdas in LAMBDA_RANGES:
        for samples in SAMPLES:
            changes: dict[str, list[float]] = {"layer": [], "signs": [], "gauss": []}
            nonzero = 0
            for index, case in enumerate(cases):
                layer = layer_for(case, lambdas, samples)
                loss, *gradient = layer_gradient(layer, case, seed * 1000 + index)
                nonzero += any(bool(g.any()) for g in gradient)
                generator = torch.Generator().manual_seed(seed * 1000 + index)
                for name, direction in (
                    ("layer", gradient),
                    ("signs", random_signs(gradient, generator)),
                    ("gauss", gaussian(gradient, generator)),
                ):
                    changes[name].append(step_change(layer, case, loss, direction, step))
            row = {"lambda": f"[{lambdas[0]:g}, {lambdas[1]:g}]", "N": samples,
                   "nonzero": nonzero / len(cases)}  # fmt: skip
            for name, values in changes.items():
                row |= {f"{name} {k}": v for k, v in summarise(values).items()}
            rows.append(row)
    return rows


def smoothed_gradient(
    layer: AMWCLayer, case: Case, sigma: float, pairs: int, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], float]:
    """Antithetic Monte-Carlo gradient of ``E_Z L(solve(c + σZ))`` and the cosine between the
    estimates of its two halves (how far the estimate itself can be trusted)."""
    generator = torch.Generator().manual_seed(seed)
    node, edge = case.costs
    halves = []
    for _ in range(2):
        total = [torch.zeros_like(node), torch.zeros_like(edge)]
        for _ in range(pairs // 2):
            noise = (torch.randn(node.shape, generator=generator),
                     torch.randn(edge.shape, generator=generator))  # fmt: skip
            plus = solved_loss(layer, case, node + sigma * noise[0], edge + sigma * noise[1])
            minus = solved_loss(layer, case, node - sigma * noise[0], edge - sigma * noise[1])
            for t, z in zip(total, noise, strict=True):
                t += (plus - minus) / (2 * sigma) * z
        halves.append([t / (pairs // 2) for t in total])
    agreement = cosine(halves[0], halves[1])
    return tuple((a + b) / 2 for a, b in zip(*halves, strict=True)), agreement


def cosine(a, b) -> float:
    dot = sum(float((x * y).sum()) for x, y in zip(a, b, strict=True))
    norms = (sum(float(x.square().sum()) for x in v) ** 0.5 for v in (a, b))
    product = next(norms) * next(norms)
    return dot / product if product else 0.0


def smoothed_table(cases: list[Case], step: float, sigma: float, pairs: int) -> list[dict]:
    """The layer's gradient (paper λ ∈ [1, 5000], N = 5 and 20) against the smoothed loss's."""
    rows = []
    for index, case in enumerate(cases):
        smooth_layer = layer_for(case, (1.0, 5000.0), 5)
        loss = solved_loss(smooth_layer, case, *case.costs)
        smooth, agreement = smoothed_gradient(smooth_layer, case, sigma, pairs, index)
        row = {"problem": index, "loss": loss, "MC halves cos": agreement,
               "smooth change": step_change(smooth_layer, case, loss, smooth, step)}  # fmt: skip
        for samples in (5, 20):
            layer = layer_for(case, (1.0, 5000.0), samples)
            _, *gradient = layer_gradient(layer, case, index)
            row[f"N={samples} cos"] = cosine(gradient, smooth)
            row[f"N={samples} change"] = step_change(layer, case, loss, gradient, step)
        rows.append(row)
    return rows


def _table(rows: list[dict]) -> str:
    headers = list(rows[0])
    return markdown_table(headers, [[_format(h, r[h]) for h in headers] for r in rows])


def _format(header: str, value: object) -> str:
    if isinstance(value, float):
        return f"{value:+.3f}" if "change" in header or "cos" in header else f"{value:.2f}"
    return str(value)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", type=int, default=16)
    parser.add_argument("--size", type=int, nargs=2, default=(32, 64))
    parser.add_argument("--distances", type=int, nargs="+", default=(1, 4, 16))
    parser.add_argument(
        "--steps",
        type=float,
        nargs="+",
        default=(0.5, 2.0),
        help="step t: L2 norm t·√pixels (node costs: margin ≈ 3 per pixel)",
    )
    parser.add_argument(
        "--smoothed",
        type=int,
        default=0,
        help="tiny problems for the smoothed-loss comparison (0: none)",
    )
    parser.add_argument("--smoothed-size", type=int, nargs=2, default=(8, 16))
    parser.add_argument("--sigma", type=float, default=0.5)
    parser.add_argument("--pairs", type=int, default=2000)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    cases = [make_case(s, tuple(args.size), tuple(args.distances)) for s in range(args.problems)]
    report: dict = {"descent": {}}
    for step in args.steps:
        rows = descent_table(cases, step)
        report["descent"][str(step)] = rows
        print(f"\nstep t = {step} ({args.problems} problems of {args.size[0]}×{args.size[1]})")
        print(_table(rows))
    if args.smoothed:
        size = tuple(args.smoothed_size)
        tiny = [make_case(1000 + s, size, (1, 4)) for s in range(args.smoothed)]
        rows = smoothed_table(tiny, args.steps[0], args.sigma, args.pairs)
        report["smoothed"] = rows
        print(f"\nsmoothed loss, σ = {args.sigma}, {args.pairs} antithetic pairs, "
              f"{args.smoothed_size[0]}×{args.smoothed_size[1]}")  # fmt: skip
        print(_table(rows))
    write_json(args.json, report)
    return report


if __name__ == "__main__":
    main()
