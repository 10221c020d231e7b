"""Every default labeling stays bit-identical to the recorded one (see tests/golden.py)."""

from __future__ import annotations

import json

from tests.golden import RECORD, current_hashes


def test_default_labelings_match_the_record():
    recorded = json.loads(RECORD.read_text())
    current = current_hashes()
    assert current.keys() == recorded.keys()
    changed = sorted(name for name in recorded if current[name] != recorded[name])
    assert not changed, f"{len(changed)} of {len(recorded)} labelings changed: {changed}"
