"""Packaging: kernels/ and cuda/ ship inside gpucops."""

from __future__ import annotations

import importlib
import subprocess
import sys
from importlib import resources


def test_kernels_and_cuda_are_subpackages_of_gpucops(tmp_path):
    assert importlib.import_module("gpucops.kernels").__name__ == "gpucops.kernels"
    assert resources.files("gpucops.cuda").is_dir()
    assert resources.files("gpucops.solver.csrc").joinpath("sequential_amwc.cpp").is_file()
    # no top-level `kernels` (or `cuda`) import name, seen from outside the repository
    probe = "import importlib.util as u; print(u.find_spec('kernels'), u.find_spec('cuda'))"
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.stdout.strip() == "None None", out.stderr
