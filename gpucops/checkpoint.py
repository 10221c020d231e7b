"""Checkpoints of ``train/train.py``: written atomically, read without running code, and the
trained model rebuilt from one for inference (without importing the trainer).

A checkpoint is a dict of tensors and plain values (``torch.save``):

- ``module``: the training module's state dict — ``net.*`` the network, ``layer.*`` the AMWC
  layer (cost scalars, ``partitionable``), and entries only the trainer reads;
- ``model``: the network's :class:`~gpucops.model.ModelConfig` as a dict; ``layer``: the AMWC
  layer's settings (the keywords of :class:`~gpucops.layer.AMWCLayer` after ``partitionable``);
  ``categories``: the dataset's categories in class order (:func:`model_entries` writes these);
- for ``--resume``: ``optimizer``, ``scheduler``, ``step``, ``rng`` and the training ``config``.

Checkpoints written before ``model`` and ``layer`` were stored are read through their training
``config``, as the trainer of that time built its network from it.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch

from .layer import AMWCLayer
from .model import COPSNet, ModelConfig

__all__ = [
    "TrainedModel",
    "atomic_write",
    "load_checkpoint",
    "load_model",
    "model_entries",
    "save_checkpoint",
]


def atomic_write(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Call ``write`` on a temporary file in ``path``'s folder, flush it to disk, then rename it
    over ``path`` (a crash leaves the old file or the new one, never half)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    with open(temporary, "wb") as handle:
        write(handle)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)


def save_checkpoint(path: str | Path, state: dict) -> None:
    """Write ``state`` to ``path`` atomically (:func:`atomic_write`)."""
    atomic_write(path, lambda handle: torch.save(state, handle))


def load_checkpoint(path: str | Path) -> dict:
    """The object stored at ``path``, on the CPU. Only tensors and plain containers are read
    (``weights_only``): loading a file cannot run code from it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        # a damaged file fails anywhere in torch's zip and pickle readers (UnpicklingError,
        # RuntimeError, EOFError, IndexError, KeyError, struct.error, OSError: tests/test_fuzz.py);
        # weights_only has run no code of it, so every failure means "unreadable"
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"checkpoint {path} cannot be read safely: {first}") from None


def model_entries(net: COPSNet, layer: AMWCLayer, categories: list[dict] | None) -> dict:
    """The checkpoint entries that describe the trained model beside its weights (``module``):
    ``model`` (the network's config), ``layer`` (the layer's settings) and ``categories``."""
    settings = {
        "distances": layer.distances, "lambda_range": tuple(layer.lambda_range),
        "num_samples": layer.num_samples, "dropout": layer.dropout, "method": layer.method,
    }  # fmt: skip
    return {"model": dataclasses.asdict(net.config), "layer": settings, "categories": categories}


def _legacy_entries(config: dict) -> tuple[dict, dict]:
    """``model`` and ``layer`` of a checkpoint that stored only its training ``config``: what the
    trainer of that version built from the config (a frozen format, so written out here)."""
    model = ModelConfig.preset(
        config["model"], num_classes=config["num_classes"],
        distances=tuple(config["distances"]), pool_size=config["crop_size"],
    )  # fmt: skip
    layer = {
        "distances": tuple(config["distances"]), "lambda_range": tuple(config["lambda_range"]),
        "num_samples": config["samples"], "dropout": config["cost_dropout"],
        "method": config["solver_method"],
    }  # fmt: skip
    return dataclasses.asdict(model), layer


@dataclass(frozen=True)
class TrainedModel:
    """A trained COPS network with what inference needs beside it.

    Attributes:
        net: the network (eval mode): raw RGB ``[B, 3, H, W]`` in, stride-4 logits out.
        layer: the AMWC layer (eval mode): ``layer.costs(semantic, affinity)`` gives the solver's
            costs; ``layer.partitionable`` ``[K]`` bool, ``layer.distances``, ``layer.method``.
        categories: ``K`` dicts (``id``, ``name``, ``isthing``, …) in class order.
    """

    net: COPSNet
    layer: AMWCLayer
    categories: list[dict]

    def with_categories(self, categories: list[dict]) -> TrainedModel:
        """The same model with other ``categories`` (e.g. a dataset's JSON), which must agree
        with its classes: as many, with the same ``isthing`` flags."""
        partitionable = self.layer.partitionable.tolist()
        if len(categories) != len(partitionable):
            raise ValueError(
                f"the checkpoint has {len(partitionable)} classes but the categories list "
                f"{len(categories)}"
            )
        if [bool(c["isthing"]) for c in categories] != partitionable:
            raise ValueError("the categories' isthing flags differ from the checkpoint's classes")
        return dataclasses.replace(self, categories=list(categories))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> TrainedModel:
    """The trained network and AMWC layer of the checkpoint at ``path``, on ``device``, in eval
    mode, with the checkpoint's categories (``class k`` names where it has none).

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: one line naming the file, when it is not a gpucops training checkpoint, or
            its config or weights do not fit this version of gpucops.
    """
    state = load_checkpoint(path)
    ours = isinstance(state, dict) and isinstance(state.get("module"), dict)
    if not ours or not {"model", "config"} & set(state):
        raise ValueError(f"checkpoint {path} is not a gpucops training checkpoint")
    weights = state["module"]
    partitionable = weights.get("layer.partitionable")
    if partitionable is None:
        raise ValueError(f"checkpoint {path} has no layer.partitionable")
    try:
        if "model" in state:
            model, settings = state["model"], state["layer"]
        else:
            model, settings = _legacy_entries(state["config"])
        net = COPSNet(ModelConfig(**model))
        layer = AMWCLayer(partitionable, **settings)
    except (KeyError, TypeError, ValueError) as error:  # written by another version of gpucops
        raise ValueError(f"checkpoint {path} has an unknown model config: {error}") from None
    for prefix, part in (("net.", net), ("layer.", layer)):
        own = {k.removeprefix(prefix): v for k, v in weights.items() if k.startswith(prefix)}
        try:
            part.load_state_dict(own)
        except RuntimeError as error:
            first = str(error).strip().splitlines()[0]
            raise ValueError(f"checkpoint {path} does not fit its config: {first}") from None
    default = [
        {"id": k, "name": f"class {k}", "isthing": int(thing)}
        for k, thing in enumerate(partitionable.tolist())
    ]
    trained = TrainedModel(net.to(device).eval(), layer.to(device).eval(), default)
    stored = state.get("categories")
    try:
        return trained if stored is None else trained.with_categories(stored)
    except ValueError as error:
        raise ValueError(f"checkpoint {path}: {error}") from None
