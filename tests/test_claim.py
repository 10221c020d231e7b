"""train/claim.py: three arms from one checkpoint per seed, the JSON schema, the plot, the
post-hoc diagnostics; and the A.3 ablation's config key."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest
import yaml

from gpucops.trainer import TrainConfig

ROOT = Path(__file__).resolve().parent.parent
SMALL = {"synthetic_size": [64, 96], "distances": [1, 4, 8], "batch_size": 2, "samples": 2}


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"train_{name}", ROOT / "train" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _small_config(source: str, folder: Path) -> Path:
    values = yaml.safe_load((ROOT / "train" / "configs" / source).read_text()) | SMALL
    path = folder / source
    path.write_text(yaml.safe_dump(values))
    return path


def test_claim_runs_three_arms_from_one_checkpoint_per_seed(tmp_path):
    claim = _load_script("claim")
    protocol = {"train_images": 4, "validation_images": 2, "check_every": 1, "min_steps": 2,
                "max_steps": 2, "steps_per_arm": 1}  # fmt: skip
    output = tmp_path / "results" / "claim.json"
    claim.main(
        ["--seeds", "0", "1", "--jobs", "1", "--runs", str(tmp_path / "runs"),
         "--output", str(output), "--protocol", json.dumps(protocol),
         "--pretrain", str(_small_config("synthetic_tiny.yaml", tmp_path)),
         "--finetune", str(_small_config("synthetic_tiny_finetune.yaml", tmp_path))]
    )  # fmt: skip
    result = json.loads(output.read_text())
    assert result["validation_images"] == 2 and result["steps_per_arm"] == 1
    assert [record["seed"] for record in result["seeds"]] == [0, 1]
    for record in result["seeds"]:
        assert [step for step, _ in record["pretrain_history"]] == [1, 2]
        for arm in ("control", "solver", "ablation"):
            assert record[arm]["init_checkpoint"] == record["start"]  # one start for all arms
            for view in (record[arm], record[arm]["full"], record[arm]["oracle"]):
                assert all(0 <= view[k] <= 1 for k in ("pq", "pq_th", "pq_st", "sq", "rq"))
    # each seed has its own data
    assert (tmp_path / "runs" / "seed0" / "data").is_dir()
    assert (tmp_path / "runs" / "seed1" / "data").is_dir()
    difference = result["summary"]["paired"]["solver - control"]["pq"]
    assert difference["n"] == 2 and difference["low"] <= difference["mean"] <= difference["high"]
    assert output.with_suffix(".png").stat().st_size > 0
    report = _load_script("claim_diagnostics").main([str(tmp_path / "runs")])
    assert set(report) == {"seed0", "seed1"}
    assert report["seed0"]["solver"]["relative_change"]["backbone"] == 0  # frozen in fine-tuning


def test_finetune_loss_is_checked(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"finetune_loss": "l2"}))
    with pytest.raises(ValueError, match="finetune_loss must be one of"):
        TrainConfig.from_yaml(path)
