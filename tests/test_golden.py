"""Every default labeling stays bit-identical to the recorded one (see tests/golden.py)."""

from __future__ import annotations

import json

import pytest

from tests.golden import RECORD, current_hashes


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)])
def test_default_labelings_match_the_record(device):
    # on CUDA: the batch as one graph, the kernels through CuPy (or the torch steps without it)
    recorded = json.loads(RECORD.read_text())
    current = current_hashes(device)
    assert current.keys() == recorded.keys()
    changed = sorted(name for name in recorded if current[name] != recorded[name])
    assert not changed, f"{len(changed)} of {len(recorded)} labelings changed: {changed}"
