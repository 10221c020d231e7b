"""Shared test set-up: hypothesis profiles, the `gpu` marker, and small reference helpers."""

from __future__ import annotations

import os

import gpucops  # noqa: F401  (first: idle OpenMP threads sleep, as in the CLI; gpucops/_openmp.py)

# isort: split
import pytest
import torch
from hypothesis import HealthCheck, settings

if not torch.cuda.is_available():
    # Without a GPU the kernel tests' implementation="triton" calls run in the Triton interpreter,
    # on CPU tensors (every other test gets the torch reference: "auto" never interprets). Both
    # variables are read when triton is imported or a kernel is defined, so set them before any
    # of that; debug makes tl.device_assert check.
    os.environ.setdefault("TRITON_INTERPRET", "1")
    os.environ.setdefault("TRITON_DEBUG", "1")

# CI keeps hypothesis small (2 cores, a 15-minute budget for the whole suite); run with
# HYPOTHESIS_PROFILE=thorough for a deeper search.
settings.register_profile(
    "ci", max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "thorough", max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
