"""Checkpoints: atomic writes, safe reads, and the trained model rebuilt for inference."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from gpucops.checkpoint import load_checkpoint, load_model, save_checkpoint
from gpucops.model import ModelConfig
from tests.checkpoints import DISTANCES, PARTITIONABLE, write_tiny_checkpoint


def test_an_interrupted_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"step": 1, "weights": torch.ones(3)})

    def crash(state, handle):
        handle.write(b"half a checkpoint")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", crash)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"step": 2, "weights": torch.zeros(3)})
    monkeypatch.undo()
    state = load_checkpoint(path)
    assert state["step"] == 1 and torch.equal(state["weights"], torch.ones(3))


def test_load_model_rebuilds_the_saved_network_and_layer(tmp_path):
    state = write_tiny_checkpoint(tmp_path / "c.pt")
    model = load_model(tmp_path / "c.pt")
    assert model.net.config == ModelConfig.tiny(
        num_classes=3, distances=DISTANCES, pool_size=(64, 64)
    )
    assert not model.net.training and not model.layer.training
    assert model.layer.distances == DISTANCES and model.layer.lambda_range == (2.0, 9.0)
    assert model.layer.num_samples == 3 and model.layer.method == "parallel"
    assert torch.equal(model.layer.partitionable, PARTITIONABLE)
    for prefix, part in (("net.", model.net), ("layer.", model.layer)):
        for key, value in part.state_dict().items():
            assert torch.equal(value, state["module"][prefix + key]), key
    assert [c["id"] for c in model.categories] == [7, 8, 9]
    renamed = model.with_categories([{"id": k, "name": "x", "isthing": k == 2} for k in range(3)])
    assert [c["id"] for c in renamed.categories] == [0, 1, 2] and renamed.net is model.net
    with pytest.raises(ValueError, match="3 classes but the categories list 2"):
        model.with_categories(renamed.categories[:2])
    with pytest.raises(ValueError, match="isthing"):
        model.with_categories([{"id": k, "name": "x", "isthing": 0} for k in range(3)])


def test_checkpoints_without_a_stored_model_config_load_through_their_training_config(tmp_path):
    """Checkpoints written before ``model``/``layer`` were stored: the same network as the
    trainer builds from that training config, the layer's settings from it too."""
    from gpucops.trainer import TrainConfig, TrainingModule

    config = TrainConfig(
        model="tiny", num_classes=3, distances=DISTANCES, crop_size=(64, 96), samples=2,
        lambda_range=(3.0, 4.0), solver_method="sequential",
    )  # fmt: skip
    module = TrainingModule(config, PARTITIONABLE)
    save_checkpoint(
        tmp_path / "old.pt",
        {"module": module.state_dict(), "config": dataclasses.asdict(config), "step": 1},
    )
    model = load_model(tmp_path / "old.pt")
    assert model.net.config == module.net.config
    assert (model.layer.num_samples, model.layer.lambda_range) == (2, (3.0, 4.0))
    assert model.layer.method == "sequential"
    assert [c["name"] for c in model.categories] == ["class 0", "class 1", "class 2"]


_unpickled = []


class _RunsCodeWhenLoaded:
    def __reduce__(self):
        return _unpickled.append, ("ran",)


def _refused(path, needle: str, kind: type[Exception] = ValueError) -> None:
    """``load_model(path)`` fails with one line that names the file and says ``needle``."""
    with pytest.raises(kind) as error:
        load_model(path)
    message = str(error.value)
    assert str(path) in message and needle in message and "\n" not in message, message


def test_loading_refuses_what_is_not_a_checkpoint_in_one_line_naming_the_file(tmp_path):
    _refused(tmp_path / "missing.pt", "does not exist", FileNotFoundError)
    (tmp_path / "garbage.pt").write_bytes(b"not a checkpoint")
    _refused(tmp_path / "garbage.pt", "cannot be read safely")
    # a pickle that would run code when loaded is refused before it runs
    torch.save({"module": {}, "model": _RunsCodeWhenLoaded()}, tmp_path / "code.pt")
    _refused(tmp_path / "code.pt", "cannot be read safely")
    assert _unpickled == []
    torch.save({"something": 1}, tmp_path / "other.pt")
    _refused(tmp_path / "other.pt", "is not a gpucops training checkpoint")
    state = write_tiny_checkpoint(tmp_path / "c.pt")
    save_checkpoint(tmp_path / "unknown.pt", {**state, "model": {**state["model"], "bogus": 1}})
    _refused(tmp_path / "unknown.pt", "has an unknown model config")
    save_checkpoint(
        tmp_path / "wrong.pt", {**state, "model": {**state["model"], "head_channels": 8}}
    )
    _refused(tmp_path / "wrong.pt", "does not fit its config")
    save_checkpoint(tmp_path / "few.pt", {**state, "categories": state["categories"][:2]})
    _refused(tmp_path / "few.pt", "3 classes but the categories list 2")
