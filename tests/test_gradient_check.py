"""The layer's gradient points downhill: a step against it lowers the PQ surrogate of the solved
labeling, and random directions of the same norm do not (benchmarks/gradient_check.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "gradient_check.py"


def _load():
    spec = importlib.util.spec_from_file_location("benchmarks_gradient_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_a_step_against_the_layers_gradient_beats_random_directions():
    check = _load()
    case = check.make_case(1, (16, 32), (1, 4))
    layer = check.layer_for(case, (1.0, 5000.0), 5)  # the paper's λ interval and N
    loss, *gradient = check.layer_gradient(layer, case, seed=0)
    assert loss > 1  # a problem with errors to correct
    descent = check.step_change(layer, case, loss, gradient, 0.5)
    generator = torch.Generator().manual_seed(0)
    random = [
        check.step_change(layer, case, loss, check.gaussian(gradient, generator), 0.5)
        for _ in range(4)
    ]
    # measured: −1.76 for the gradient, +0.05 … +0.27 for eight random directions
    assert descent < -0.5 and descent < min(random)


def test_the_table_has_a_row_per_lambda_range_and_sample_count():
    check = _load()
    cases = [check.make_case(0, (8, 16), (1, 4))]
    rows = check.descent_table(cases, 0.5)
    assert len(rows) == len(check.LAMBDA_RANGES) * len(check.SAMPLES)
    assert all(0 <= row["layer descent"] <= 1 for row in rows)
