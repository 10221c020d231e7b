"""Quality of the parallel solver's variants against the sequential greedy, on small synthetic
problems: the ratio (trivial − parallel) / (trivial − sequential) of objective improvements.

These are benchmark figures, not invariants (a different problem may order them otherwise), so
they live here and run with ``make bench``: the defaults keep ≥ 99.5 % of the sequential
greedy's improvement, and each of the rounds' two options adds quality over the plain rounds
(compared with rounds to the end, ``tail=0``: at this size the default tail would finish every
variant with the exact greedy).
"""

from __future__ import annotations

import pytest

import gpucops
from gpucops.objectives import improvement_ratio, trivial_objective
from gpucops.synthetic import make_problem

VARIANTS = {
    "default": {},
    "rounds": {"tail": 0},
    "tiles only": {"top_fraction": None, "tail": 0},
    "plain": {"tile": 0, "top_fraction": None, "tail": 0},
}


@pytest.mark.parametrize(("num_classes", "seed"), [(19, 0), (19, 1), (133, 2)])
def test_defaults_beat_the_plain_rounds_and_keep_the_greedys_quality(num_classes, seed, smoke):
    if smoke:
        pytest.skip("an ordering on problems of this size, not plumbing (--smoke)")
    p = make_problem(1, 48, 96, num_classes, distances=(1, 4, 16, 32), seed=seed)
    args = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    trivial = trivial_objective(*args)
    sequential = gpucops.solve(*args, method="sequential").objective
    quality, rounds = {}, {}
    for name, options in VARIANTS.items():
        result = gpucops.solve(*args, **options)
        quality[name] = improvement_ratio(trivial, result.objective, sequential).item()
        rounds[name] = result.info["rounds"]
    assert quality["default"] > 0.995 and rounds["default"] < 100, (quality, rounds)
    assert 0.98 < quality["plain"] < quality["tiles only"] < quality["rounds"], quality
    assert quality["default"] >= quality["rounds"], quality  # the tail's exact greedy
