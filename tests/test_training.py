"""Training: what each stage updates, exact resume, torchrun with gloo."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from gpucops.checkpoint import save_checkpoint
from gpucops.trainer import (
    BATCH_NORMS,
    TrainConfig,
    TrainingModule,
    _batch_indices,
    _datasets,
    train,
    training_batches,
    with_sync_batch_norms,
)

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def config_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("training")
    values = {
        "stage": "pretrain", "dataset": "synthetic", "data_root": str(folder / "data"),
        "synthetic_images": [4, 1], "synthetic_size": [64, 96], "model": "tiny",
        "distances": [1, 4, 8], "batch_size": 2, "steps": 2, "warmup": 1, "lr": 0.01,
        "samples": 2, "lambda_range": [1.0, 20.0], "output_dir": str(folder / "run"),
        "checkpoint_every": 2, "validate_every": 100, "crop_size": [48, 80],
        "scale_range": [0.8, 1.2],
    }  # fmt: skip
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(values))
    return path


def _state(module):
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _changed(before, after, prefix):
    keys = [k for k in before if k.startswith(prefix) and before[k].is_floating_point()]
    return {k for k in keys if not torch.equal(before[k], after[k])}, keys


def test_each_stage_updates_what_it_should(config_file, tmp_path):
    config = TrainConfig.from_yaml(config_file, {"steps": 1, "output_dir": str(tmp_path / "p")})
    torch.manual_seed(0)
    start = _state(train(dataclasses.replace(config, steps=0))["module"])
    pre = _state(train(config)["module"])
    changed, keys = _changed(start, pre, "net.")
    assert len(changed) > 0.8 * len(
        [k for k in keys if "running" not in k and "num_batches" not in k]
    )
    assert not _changed(start, pre, "layer.")[0]  # the cost scalars have no pre-training loss
    save_checkpoint(tmp_path / "init.pt", {"module": pre})
    fine = dataclasses.replace(
        config, stage="finetune", init_checkpoint=str(tmp_path / "init.pt"),
        output_dir=str(tmp_path / "f"),
    )  # fmt: skip
    module = train(fine)["module"]
    after = _state(module)
    for frozen in ("net.backbone.", "net.semantic_decoder.", "net.affinity_decoder."):
        assert not _changed(pre, after, frozen)[0], frozen
    batch_norm = [k for k in pre if "running_mean" in k]
    assert all(torch.equal(pre[k], after[k]) for k in batch_norm)  # frozen statistics
    # a trainable parameter moves exactly when the step gave it a gradient (after one
    # pre-training step the semantic costs are tiny and may get none: the MWC labels of one
    # class map back to the same class)
    for name, parameter in module.named_parameters():
        if name.startswith(("net.backbone.", "net.semantic_decoder.", "net.affinity_decoder.")):
            assert not parameter.requires_grad, name
        elif parameter.requires_grad:
            moved = not torch.equal(pre[name], after[name])
            assert moved == bool(parameter.grad is not None and parameter.grad.any()), name
    assert _changed(pre, after, "net.classifiers.")[0] and _changed(pre, after, "layer.")[0]
    # the log names each parameter group's LR (§4.6: LR/40, /20, /60, …) and the loss's terms
    with open(tmp_path / "f" / "log.csv", newline="") as handle:
        (row,) = csv.DictReader(handle)
    rates = {k.removeprefix("lr_"): float(v) for k, v in row.items() if k.startswith("lr_")}
    assert rates["semantic_head"] == pytest.approx(rates["cost_scalars"] / 40)
    assert rates["affinity_head"] == pytest.approx(rates["cost_scalars"] / 60)
    assert rates["classifier0_last"] == pytest.approx(rates["cost_scalars"] / 20)
    assert float(row["loss"]) == pytest.approx(float(row["loss_pq_surrogate"]))


def test_kill_and_resume_equals_an_uninterrupted_run(config_file, tmp_path):
    whole = TrainConfig.from_yaml(config_file, {"steps": 4, "output_dir": str(tmp_path / "a")})
    uninterrupted = _state(train(whole)["module"])
    half = TrainConfig.from_yaml(config_file, {"steps": 4, "output_dir": str(tmp_path / "b")})
    train(half, stop_at=2)  # "killed" after its step-2 checkpoint
    resumed = _state(train(half, resume=True)["module"])
    for key, value in uninterrupted.items():
        torch.testing.assert_close(resumed[key], value, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU thread policy of a CPU machine")
@pytest.mark.parametrize(("setting", "expected"), [(None, 1), (2, 2)])
def test_a_cpu_run_trains_on_its_thread_count_and_gives_the_callers_back(
    setting, expected, config_file, tmp_path, monkeypatch
):
    # the tiny model's many short parallel regions made a step 2.7× slower beside a busy
    # neighbour on two threads (issue 18, item 16), so a CPU run of it uses one unless told
    config = TrainConfig.from_yaml(
        config_file, {"steps": 1, "output_dir": str(tmp_path / "run"), "cpu_threads": setting}
    )
    seen = []
    forward = TrainingModule.forward
    monkeypatch.setattr(
        TrainingModule, "forward",
        lambda self, *args: seen.append(torch.get_num_threads()) or forward(self, *args),
    )  # fmt: skip
    before = torch.get_num_threads()
    torch.set_num_threads(3)
    try:
        train(config)
        assert seen == [expected] and torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)


def test_bad_configs(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("stage: pretrain\nbogus: 1\n")
    with pytest.raises(ValueError, match="unknown config keys"):
        TrainConfig.from_yaml(path)
    path.write_text("stage: nonsense\n")
    with pytest.raises(ValueError, match="stage"):
        TrainConfig.from_yaml(path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("lr: 1e-3\n", "lr must be a number"),  # YAML 1.1 reads this as a string
        ("batch_size: 0\n", "batch_size must be ≥ 1"),
        ("accumulate: 0\n", "accumulate must be ≥ 1"),  # trained nothing and exited 0
        ("checkpoint_every: 0\n", "checkpoint_every must be ≥ 1"),
        ("stage: finetune\n", "set init_checkpoint"),  # was silently random
        ("lambda_range: [1, .inf]\n", "lambda_range must be finite"),
        ("cpu_threads: 0\n", "cpu_threads must be an integer ≥ 1"),
        ("cpu_threads: two\n", "cpu_threads must be an integer ≥ 1"),
    ],
)
def test_config_values_are_checked_when_read(text, message, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        TrainConfig.from_yaml(path)


def _train_script():
    spec = importlib.util.spec_from_file_location("train_script", ROOT / "train" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    ("write", "extra", "message"),
    [
        (None, [], "config {path} does not exist"),
        ("stage: [unclosed\n", [], "is not valid YAML"),
        ("- a list\n", [], "must hold a mapping of config keys"),
        ("stage: pretrain\n", ["--set", "steps"], "--set takes KEY=VALUE, got 'steps'"),
        (
            "stage: finetune\ninit_checkpoint: {folder}/broken.pt\noutput_dir: {folder}/run\n",
            [],
            "cannot be read safely",
        ),
        (
            "dataset: cityscapes\ndata_root: {folder}/nowhere\noutput_dir: {folder}/run\n",
            [],
            "is not a CityscapesPanoptic",
        ),
    ],
)
def test_train_script_errors_are_one_line_naming_the_cause(write, extra, message, tmp_path, capsys):
    path = tmp_path / "c.yaml"
    (tmp_path / "broken.pt").write_bytes(b"PK\x03\x04 truncated")
    if write is not None:
        path.write_text(write.format(folder=tmp_path))
    script = _train_script()
    argv = ["--config", str(path), *extra]
    assert script.main(argv) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("train.py: error:"), lines
    assert message.format(path=path) in lines[0], lines
    assert not (tmp_path / "nowhere").exists()  # a missing data_root is not created
    with pytest.raises((ValueError, OSError)):
        script.main([*argv, "--debug"])


def test_torchrun_two_cpu_processes_hold_identical_parameters(config_file, tmp_path):
    torchrun = shutil.which("torchrun") or str(Path(sys.executable).parent / "torchrun")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", str(ROOT / "tests/torchrun_check.py"),
         str(config_file), str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, timeout=600,
    )  # fmt: skip
    assert "ranks equal" in result.stdout, result.stdout[-2000:] + result.stderr[-3000:]
    assert result.stdout.count('"loss"') == 1  # train.py's summary: rank 0 only
    # validation sharded over the ranks (5 images: 3 + 2), merged equal to one process's
    assert "validation shares [3, 2]" in result.stdout, result.stdout[-2000:]
    assert "validation equal" in result.stdout, result.stdout[-2000:]
    # the same run again in the used folder: refused on every rank, not rank 0 alone (the
    # other rank used to wait at the barrier for it)
    again = subprocess.run(
        [torchrun, "--standalone", "--nproc_per_node=2", str(ROOT / "tests/torchrun_check.py"),
         str(config_file), str(tmp_path / "ddp")],
        capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip
    assert again.returncode != 0
    assert again.stderr.count("already holds a run") >= 2, again.stderr[-3000:]


def test_a_used_folder_needs_resume_and_a_resume_needs_its_checkpoint(config_file, tmp_path):
    config = TrainConfig.from_yaml(config_file, {"steps": 1, "output_dir": str(tmp_path / "r")})
    train(config)
    with pytest.raises(ValueError, match="already holds a run"):
        train(config)  # would have replaced the trained checkpoint and appended to its log
    with pytest.raises(ValueError, match="does not exist"):
        train(dataclasses.replace(config, output_dir=str(tmp_path / "new")), resume=True)


def test_two_runs_in_one_folder_and_an_unwritable_folder_fail_at_start(config_file, tmp_path):
    import fcntl

    config = TrainConfig.from_yaml(config_file, {"steps": 1, "output_dir": str(tmp_path / "r")})
    (tmp_path / "r").mkdir()
    with open(tmp_path / "r" / ".lock", "a") as other_run:
        fcntl.flock(other_run, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match="in use by another training run"):
            train(config)
    (tmp_path / "file").write_text("")
    blocked = dataclasses.replace(config, output_dir=str(tmp_path / "file" / "run"))
    with pytest.raises(ValueError, match="not writable"):
        train(blocked)


def test_resume_refuses_a_changed_config_and_logs_each_step_once(config_file, tmp_path):
    config = TrainConfig.from_yaml(
        config_file, {"steps": 4, "checkpoint_every": 2, "output_dir": str(tmp_path / "r")}
    )
    train(config, stop_at=3)  # killed after step 3, its checkpoint at step 2
    for change in ({"seed": 1}, {"batch_size": 1}, {"lr": 0.5}):
        with pytest.raises(ValueError, match=f"--resume: the config differs.*{next(iter(change))}"):
            train(dataclasses.replace(config, **change), resume=True)
    train(dataclasses.replace(config, validate_every=7), resume=True)  # an interval may change
    lines = (tmp_path / "r" / "log.csv").read_text().split()
    assert lines[0].startswith("step,loss,") and not any(x.startswith("step") for x in lines[1:])
    assert [int(line.split(",")[0]) for line in lines[1:]] == [1, 2, 3, 4]


@pytest.mark.parametrize(
    ("name", "batch", "lr", "lambdas"),
    [
        ("cityscapes_pretrain", 12, 1e-4, None),
        ("cityscapes_finetune", 24, 1e-3, (1.0, 5000.0)),
        ("coco_pretrain", 48, 1e-4, None),
        ("coco_finetune", 24, 1e-4, (1000.0, 5000.0)),
    ],
)
def test_the_papers_configs_build_the_papers_network(name, batch, lr, lambdas):
    from gpucops.model import COPSNet
    from gpucops.trainer import model_config

    config = TrainConfig.from_yaml(ROOT / "train" / "configs" / f"{name}.yaml")
    assert (config.batch_size, config.lr) == (batch, lr)
    if lambdas is not None:
        assert (config.lambda_range, config.samples, config.cost_dropout) == (lambdas, 5, 0.1)
    model = model_config(config)
    assert (model.depth, model.stem, model.decoder_fuse) == (50, "deeplab", "separable5x5")
    count = sum(p.numel() for p in COPSNet(model).parameters())
    assert 33.5e6 < count < 34.5e6  # supplementary Table 3: 34M


def test_batch_size_is_the_global_batch_whatever_the_number_of_processes():
    from gpucops.trainer import _batch_indices, per_rank_batch

    config = TrainConfig(batch_size=12, accumulate=2)
    assert per_rank_batch(config, 3) == 2
    for step in range(5):
        alone = _batch_indices(40, step, config, 0, 1)
        shared = [_batch_indices(40, step, config, rank, 3) for rank in range(3)]
        assert [i for indices, _ in shared for i in indices] == alone[0]
        assert all(epoch == alone[1] for _, epoch in shared)
    with pytest.raises(ValueError, match=r"batch_size 12 \(the global batch\) is not divisible"):
        per_rank_batch(config, 4)


def _scalars_and_images(folder: Path) -> tuple[dict, dict]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(folder), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars = {t: [(e.step, e.value) for e in events.Scalars(t)] for t in events.Tags()["scalars"]}
    return scalars, {t: events.Images(t) for t in events.Tags()["images"]}


def test_the_run_folder_records_config_log_snapshots_best_and_tensorboard(config_file, tmp_path):
    from gpucops.checkpoint import load_checkpoint, load_model

    config = TrainConfig.from_yaml(
        config_file,
        {"steps": 3, "checkpoint_every": 1, "validate_every": 1, "keep_snapshots": 2,
         "overlay_images": 1, "output_dir": str(tmp_path / "r")},
    )  # fmt: skip
    train(config)
    folder = tmp_path / "r"
    assert TrainConfig.from_yaml(folder / "config.yaml") == config  # the resolved config
    with open(folder / "log.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == [
        "step", "loss", "loss_semantic", "loss_affinity", "lr_net", "seconds"
    ]  # fmt: skip
    for row in rows:
        parts = float(row["loss_semantic"]) + float(row["loss_affinity"])
        assert float(row["loss"]) == pytest.approx(parts)
    kept = sorted(p.name for p in folder.glob("snapshot_*.pt"))
    assert kept == ["snapshot_2.pt", "snapshot_3.pt"]
    assert load_checkpoint(folder / "snapshot_2.pt")["step"] == 2
    scalars, images = _scalars_and_images(folder / "tensorboard")
    assert {"pretrain/loss_semantic", "pretrain/loss_affinity", "pretrain/lr_net"} <= set(scalars)
    assert [step for step, _ in scalars["pretrain/val_pq"]] == [1, 2, 3]
    assert [e.step for e in images["pretrain/val_overlay_0"]] == [1, 2, 3]
    assert images["pretrain/val_overlay_0"][0].width == 3 * 96  # image | prediction | truth
    # best.pt: the network of the first step with the highest validation PQ, loadable alone
    best_step, best_pq = max(scalars["pretrain/val_pq"], key=lambda e: (e[1], -e[0]))
    best = load_checkpoint(folder / "best.pt")
    assert best["step"] == best_step and "optimizer" not in best
    assert best["validation"]["All"]["pq"] == pytest.approx(best_pq)
    load_model(folder / "best.pt")


def test_tensorboard_overlays_are_scaled_down_to_a_bounded_height():
    from gpucops.trainer import _thumbnail

    picture = np.zeros((1024, 6144, 3), np.uint8)  # a Cityscapes image | prediction | truth
    assert _thumbnail(picture, 512).shape == (512, 3072, 3)
    assert _thumbnail(picture[:100], 512).shape == (100, 6144, 3)


def test_dataloader_workers_give_the_same_run_as_the_training_process(config_file, tmp_path):
    # the epoch of each item travels with its index (a worker holds its own dataset copy) and
    # the loader's seed comes from the run's, so workers change nothing in the run
    runs = []
    for workers in (0, 2):
        config = TrainConfig.from_yaml(
            config_file,
            {"steps": 3, "workers": workers, "output_dir": str(tmp_path / f"w{workers}")},
        )
        runs.append(_state(train(config)["module"]))
    assert runs[0].keys() == runs[1].keys()
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
    # and each batch holds the items of its step's epoch (4 images, batch 2: epochs 0, 0, 1, 1)
    train_set, _ = _datasets(config)
    batches = list(training_batches(train_set, config, rank=0, world=1, start=0, stop=4))
    for micro_step, batch in enumerate(batches):
        indices, epoch = _batch_indices(len(train_set), micro_step, config, 0, 1)
        train_set.epoch = epoch
        expected = torch.stack([train_set[i]["image"] for i in indices])
        assert epoch == micro_step // 2 and torch.equal(batch["image"], expected)


@pytest.mark.parametrize(("device", "world", "synced"), [("cuda", 2, True), ("cuda", 1, False),
                                                          ("cpu", 2, False)])  # fmt: skip
def test_batch_norms_are_synchronised_in_a_multi_gpu_run_and_still_frozen_in_fine_tuning(
    device, world, synced, tmp_path
):
    config = TrainConfig(stage="finetune", init_checkpoint="unused", model="tiny")
    module = with_sync_batch_norms(
        TrainingModule(config, torch.tensor([False, True] * 9 + [False])), torch.device(device),
        world,
    )  # fmt: skip
    kinds = {type(m) for m in module.modules() if isinstance(m, BATCH_NORMS)}
    assert kinds == ({torch.nn.SyncBatchNorm} if synced else {torch.nn.BatchNorm2d})
    groups = module.parameter_groups()
    trained = {id(p) for group in groups for p in group["params"]}
    norms = [m for m in module.modules() if isinstance(m, BATCH_NORMS)]
    assert all(id(p) not in trained for m in norms for p in m.parameters())
    module.train()
    assert not any(m.training for m in norms)  # fine-tuning keeps their statistics
    off = dataclasses.replace(config, sync_batchnorm=False)
    plain = with_sync_batch_norms(TrainingModule(off, torch.ones(19, dtype=torch.bool)),
                                  torch.device("cuda"), 2)  # fmt: skip
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in plain.modules())
