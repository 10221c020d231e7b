"""Training of COPS: baseline pre-training and the fully differentiable stage, in one process or
under ``torchrun`` (DistributedDataParallel: nccl on GPUs, gloo on CPUs).

``train/train.py --config CONFIG.yaml`` drives :func:`train`. A run is a pure function of its
config and its step: the batch of step s (each rank's share of a per-epoch permutation seeded by
(seed, epoch)), the augmentation (seeded by (seed, epoch, index)), the cost dropout and the λ draw
(seeded by (seed, step)); the global torch RNG state (decoder dropout) is saved in every
checkpoint. So ``--resume`` continues exactly. Checkpoints are written atomically (temporary file,
fsync, rename; :mod:`gpucops.checkpoint`): a run killed mid-write leaves the previous checkpoint
intact.
"""

from __future__ import annotations

import csv
import dataclasses
import fcntl
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import torch
import torch.distributed as dist
from torch import nn
from tqdm import tqdm

from .checkpoint import load_checkpoint, model_entries, save_checkpoint
from .data import (
    CityscapesPanoptic,
    CocoPanoptic,
    panoptic_segments,
    write_synthetic_cityscapes,
)
from .layer import AMWCLayer
from .losses import affinity_pretraining_loss, panoptic_quality_loss, semantic_pretraining_loss
from .metrics import PanopticQuality
from .model import COPSNet, ModelConfig, load_pretrained

__all__ = ["TrainConfig", "TrainingModule", "model_config", "train"]


@dataclass
class TrainConfig:
    """Everything a run depends on (YAML keys of the same names)."""

    stage: str = "pretrain"  # pretrain | finetune
    dataset: str = "synthetic"  # synthetic | cityscapes | coco
    data_root: str = "data/synthetic"
    synthetic_images: tuple[int, int] = (32, 8)  # train, val (written if absent)
    synthetic_size: tuple[int, int] = (128, 256)
    model: str = "tiny"  # tiny | full
    # architecture over the preset's (None: the preset's): ResNet depth 18/34/50/101, stem
    # torchvision | deeplab, stride in the 1×1 convolution (MSRA weights), decoder fusion
    # separable3x3x2 | separable5x5 (COPS' and Panoptic-DeepLab's published networks)
    depth: int | None = None
    stem: str | None = None
    stride_in_1x1: bool | None = None
    decoder_fuse: str | None = None
    num_classes: int = 19
    distances: tuple[int, ...] = (1, 4, 16, 32)
    # pretrain: ImageNet weights of the backbone (torchvision .pth, detectron2/MSRA .pkl, …)
    backbone_weights: str | None = None
    # the network (and cost scalars) to start from: a gpucops checkpoint (finetune: the
    # pre-trained run's), an official COPS or Panoptic-DeepLab checkpoint, a `gpucops convert` file
    init_checkpoint: str | None = None
    crop_size: tuple[int, int] | None = None
    scale_range: tuple[float, float] | None = None
    flip: bool = True
    batch_size: int = 4  # the global batch per optimizer step (all processes, all micro-steps)
    accumulate: int = 1  # micro-steps per optimizer step
    steps: int = 100
    # length of the warm-up-poly LR schedule (None: steps); the paper's fine-tuning schedules
    # run over 20000 steps and were evaluated at 3000 (Cityscapes) / 10000 (COCO)
    schedule_steps: int | None = None
    lr: float = 1e-3
    warmup: int = 10
    poly_power: float = 0.9
    semantic_top_k: float = 0.2
    affinity_top_k: float = 0.25
    affinity_loss_weight: float = 0.25
    thing_weight: float = 4.0
    # official pre-training: 3 (below 4096 pixels); on the synthetic scenes, where every thing is
    # small, 3 collapsed the tiny model's validation PQ (seed 0: 0.207 → 0.008), so 1 by default
    small_instance_weight: float = 1.0
    small_instance_area: int = 4096
    pq_loss_weight: float = 10.0
    lambda_range: tuple[float, float] = (1.0, 5000.0)
    samples: int = 5
    cost_dropout: float = 0.1
    thing_area: float = 50.0  # foreground-probability thresholds, in grid pixels
    stuff_area: float = 128.0
    solver_method: str = "parallel"
    amp: bool = True  # mixed precision on GPUs
    seed: int = 0
    output_dir: str = "runs/synthetic"
    checkpoint_every: int = 50
    validate_every: int = 50

    @classmethod
    def from_yaml(cls, path: str | Path, overrides: dict | None = None) -> TrainConfig:
        import yaml

        if not Path(path).is_file():
            raise FileNotFoundError(f"config {path} does not exist")
        try:
            values = yaml.safe_load(Path(path).read_text()) or {}
        except yaml.YAMLError as error:
            raise ValueError(f"{path} is not valid YAML: {' '.join(str(error).split())}") from None
        if not isinstance(values, dict):
            raise ValueError(
                f"{path} must hold a mapping of config keys, got {type(values).__name__}"
            )
        values.update(overrides or {})
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - set(known))
        if unknown:
            raise ValueError(f"{path}: unknown config keys {unknown}")
        for key, value in values.items():
            if isinstance(value, list):
                values[key] = tuple(value)
        for key, value in values.items():  # YAML reads 1e-3 as a string, for one
            expected = known[key].default
            if isinstance(expected, (int, float)) and not isinstance(expected, bool):
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise ValueError(f"{path}: {key} must be a number, got {value!r}")
        config = cls(**values)
        if config.stage not in ("pretrain", "finetune"):
            raise ValueError(f"stage must be 'pretrain' or 'finetune', got {config.stage!r}")
        for key in ("batch_size", "accumulate", "checkpoint_every", "validate_every", "samples"):
            if getattr(config, key) < 1:
                raise ValueError(f"{path}: {key} must be ≥ 1, got {getattr(config, key)}")
        if config.stage == "finetune" and not config.init_checkpoint:
            raise ValueError(
                f"{path}: stage finetune starts from a pre-trained run: set init_checkpoint"
            )
        low, high = config.lambda_range
        if not 0 < low <= high < math.inf:
            raise ValueError(f"{path}: lambda_range must be finite with 0 < low ≤ high, got "
                             f"{config.lambda_range}")  # fmt: skip
        return config


def _datasets(config: TrainConfig):
    root = Path(config.data_root)
    kwargs = dict(
        distances=config.distances, thing_weight=config.thing_weight,
        small_instance_weight=config.small_instance_weight,
        small_instance_area=config.small_instance_area,
    )  # fmt: skip
    if config.dataset == "synthetic":
        for split, count in zip(("train", "val"), config.synthetic_images, strict=True):
            if not (root / "gtFine" / f"cityscapes_panoptic_{split}_trainId.json").is_file():
                write_synthetic_cityscapes(
                    root, count, *config.synthetic_size, split=split, seed=config.seed + 1
                    if split == "val" else config.seed, progress=False,
                )  # fmt: skip
        kind = CityscapesPanoptic
    else:
        kind = {"cityscapes": CityscapesPanoptic, "coco": CocoPanoptic}[config.dataset]
    train_set = kind(
        root, "train", crop_size=config.crop_size, scale_range=config.scale_range,
        flip=config.flip, seed=config.seed, **kwargs,
    )  # fmt: skip
    return train_set, kind(root, "val", **kwargs)


def _collate(items: list[dict]) -> dict:
    return {
        key: torch.stack([i[key] for i in items]) if torch.is_tensor(items[0][key])
        else [i[key] for i in items]
        for key in items[0]
    }  # fmt: skip


def model_config(config: TrainConfig) -> ModelConfig:
    """The network's config: the ``model`` preset with the run's classes, distances, crop and
    the architecture keys the config sets."""
    architecture = {
        key: getattr(config, key) for key in ("depth", "stem", "stride_in_1x1", "decoder_fuse")
        if getattr(config, key) is not None
    }  # fmt: skip
    return ModelConfig.preset(
        config.model, num_classes=config.num_classes, distances=config.distances,
        pool_size=config.crop_size, **architecture,
    )  # fmt: skip


class TrainingModule(nn.Module):
    """The network and the AMWC layer (its cost scalars), with one forward per training loss, so
    DistributedDataParallel sees every trainable parameter inside ``forward``."""

    def __init__(self, config: TrainConfig, partitionable: torch.Tensor):
        super().__init__()
        self.config = config
        self.net = COPSNet(model_config(config))
        self.layer = AMWCLayer(
            partitionable, config.distances, config.lambda_range, config.samples,
            config.cost_dropout, config.solver_method,
        )  # fmt: skip
        thresholds = torch.where(partitionable, config.thing_area, config.stuff_area)
        self.register_buffer("area_thresholds", thresholds)

    def forward(self, batch: dict, step_seed: int) -> torch.Tensor:
        semantic, affinity = self.net(batch["image"])
        config = self.config
        if config.stage == "pretrain":
            return semantic_pretraining_loss(
                semantic.float(), batch["semantic"], batch["semantic_weight"], config.semantic_top_k
            ) + affinity_pretraining_loss(
                affinity.float(), batch["affinity_target"], batch["affinity_weight"],
                config.affinity_top_k, config.affinity_loss_weight,
            )  # fmt: skip
        out = self.layer(
            semantic.float(), affinity.float(), batch["classes"], batch["segments"],
            batch["void"], seed=step_seed,
        )  # fmt: skip
        return panoptic_quality_loss(
            out.prediction, out.target, out.channel_classes, self.area_thresholds,
            (~batch["void"]).float(), config.pq_loss_weight,
        )  # fmt: skip

    def parameter_groups(self) -> list[dict]:
        """Pre-training: the network at the base LR. Fine-tuning (§4.6): backbone, decoders and
        batch norms frozen; heads at LR/40 (semantic), LR/60 (affinity), classifier bodies LR/40,
        last layers LR/20, the cost scalars at LR."""
        lr = self.config.lr
        if self.config.stage == "pretrain":
            self.layer.requires_grad_(False)  # the cost scalars have no pre-training loss
            return [{"params": [p for p in self.parameters() if p.requires_grad], "lr": lr}]
        for part in (self.net.backbone, self.net.semantic_decoder, self.net.affinity_decoder):
            part.requires_grad_(False)
        for module in self.net.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.requires_grad_(False)
        net = self.net
        groups = [
            (net.semantic_head, lr / 40), (net.semantic_predictor, lr / 20),
            (net.affinity_head, lr / 60),
            *[(c["body"], lr / 40) for c in net.classifiers],
            *[(c["last"], lr / 20) for c in net.classifiers],
            (self.layer, lr),
        ]  # fmt: skip
        return [
            {"params": [p for p in m.parameters() if p.requires_grad], "lr": rate}
            for m, rate in groups
        ]

    def train(self, mode: bool = True) -> TrainingModule:
        super().train(mode)
        if mode and self.config.stage == "finetune":  # frozen batch norm statistics
            for module in self.net.modules():
                if isinstance(module, nn.BatchNorm2d):
                    module.eval()
        return self


def per_rank_batch(config: TrainConfig, world: int) -> int:
    """Images each process takes per micro-step: the global ``batch_size`` (per optimizer step,
    over all processes) divided by ``world`` processes and ``accumulate`` micro-steps."""
    parts = world * config.accumulate
    if config.batch_size % parts:
        raise ValueError(
            f"batch_size {config.batch_size} (the global batch) is not divisible by {world} "
            f"processes × accumulate {config.accumulate}"
        )
    return config.batch_size // parts


def _batch_indices(size: int, micro_step: int, config: TrainConfig, rank: int, world: int):
    """Indices of this rank's share of the global batch of ``micro_step`` and its epoch: the
    same images, in the same order, whatever the number of processes."""
    share = per_rank_batch(config, world)
    per_step = share * world
    steps_per_epoch = max(1, size // per_step)
    epoch, position = divmod(micro_step, steps_per_epoch)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(config.seed + epoch))
    chunk = order[position * per_step : (position + 1) * per_step]
    if chunk.numel() < per_step:  # a dataset smaller than one global batch: wrap around
        chunk = order.repeat(math.ceil(per_step / size))[:per_step]
    return chunk[rank * share : (rank + 1) * share].tolist(), epoch


@torch.no_grad()
def validate(module: TrainingModule, dataset, device: torch.device) -> dict:
    """PQ of the solved labelings against the stride-grid ground truth (in process)."""
    module.eval()
    partitionable = module.layer.partitionable
    metric = PanopticQuality({k: bool(t) for k, t in enumerate(partitionable.tolist())})
    category_ids = list(range(len(partitionable)))  # category = class index
    for index in range(len(dataset)):
        item = _collate([dataset[index]])
        semantic, affinity = module.net(item["image"].to(device))
        labeling = module.layer(semantic.float(), affinity.float()).labeling
        metric.update(
            *panoptic_segments(item["classes"][0], item["segments"][0], category_ids),
            *panoptic_segments(labeling.classes[0].cpu(), labeling.segments[0].cpu(), category_ids),
        )
    module.train()
    return metric.compute()


# config keys that may change at --resume without changing the run (paths, and how often it
# saves or validates); any other change would make the resumed run another run
_FREE_AT_RESUME = frozenset(
    {"output_dir", "data_root", "init_checkpoint", "backbone_weights", "checkpoint_every",
     "validate_every"}
)  # fmt: skip


def _claim_output(output: Path, resume: bool) -> IO:
    """Make ``output`` this run's folder: writable (checked now, not at the first checkpoint),
    locked against a second run (an OS lock, released when the process ends, even killed), and
    holding a checkpoint exactly when resuming. Returns the open lock file."""
    try:
        output.mkdir(parents=True, exist_ok=True)
        lock = open(output / ".lock", "a")  # held for the whole run
    except OSError as error:
        raise ValueError(f"output_dir {output} is not writable: {error.strerror}") from None
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock.close()
        raise ValueError(f"output_dir {output} is in use by another training run") from None
    checkpoint = output / "checkpoint.pt"
    if resume != checkpoint.is_file():
        lock.close()
        if resume:
            raise ValueError(f"--resume: {checkpoint} does not exist")
        raise ValueError(
            f"output_dir {output} already holds a run ({checkpoint.name}): pass --resume to "
            "continue it, or choose another output_dir"
        )
    return lock


def _claim_output_on_rank_0(output: Path, resume: bool, rank: int, world: int) -> IO | None:
    """:func:`_claim_output` on rank 0, its refusal raised on every rank (the others would
    otherwise wait at the next collective for a rank that has stopped). Rank 0's lock or None."""
    lock, refusal = None, None
    if rank == 0:
        try:
            lock = _claim_output(output, resume)
        except ValueError as error:
            refusal = str(error)
    if world > 1:
        shared = [refusal]
        dist.broadcast_object_list(shared, src=0)
        refusal = shared[0]
    if refusal is not None:
        raise ValueError(refusal)
    return lock


def _check_resumed_config(config: TrainConfig, stored: dict) -> None:
    """Refuse a resume whose config differs from the checkpoint's beyond paths and intervals:
    the resumed run would silently not be the run it continues."""

    def plain(value: object) -> object:
        return tuple(value) if isinstance(value, list) else value

    current = dataclasses.asdict(config)
    changed = [
        f"{key}: {plain(stored.get(key))!r} → {plain(value)!r}"
        for key, value in current.items()
        if key not in _FREE_AT_RESUME and plain(stored.get(key)) != plain(value)
    ]
    if changed:
        raise ValueError(
            f"--resume: the config differs from the checkpoint's ({'; '.join(changed)}); "
            "resume with the run's own config, or start a new run in another output_dir"
        )


def _truncated_log(path: Path, step: int) -> IO:
    """``log.csv`` opened for appending after its rows up to ``step`` (those after the resumed
    checkpoint were logged by the interrupted run and are done again)."""
    rows = []
    if path.is_file():
        with open(path, newline="") as handle:
            rows = [row for row in csv.reader(handle) if row and int(row[0]) <= step]
    with open(path, "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    return open(path, "a", newline="")  # closed at the end of the run


def train(config: TrainConfig, resume: bool = False, stop_at: int | None = None) -> dict:
    """Run (or continue) a training run; returns the final loss, the last validation result,
    the step and the trained :class:`TrainingModule`. ``stop_at`` ends the run early at that
    step (as if killed there; the schedule stays that of ``config.steps``)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(
        f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"
    )
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    torch.manual_seed(config.seed)
    per_rank_batch(config, world)  # a global batch the processes cannot share: refused now
    output = Path(config.output_dir)
    lock = _claim_output_on_rank_0(output, resume, rank, world)
    train_set, val_set = _datasets(config) if rank == 0 or world == 1 else (None, None)
    if world > 1:
        dist.barrier()  # rank 0 wrote the synthetic data
        if rank:
            train_set, val_set = _datasets(config)
    module = TrainingModule(config, train_set.partitionable)
    log = (lambda text: print(text, file=sys.stderr)) if rank == 0 else None
    if config.backbone_weights and config.stage == "pretrain" and not resume:
        load_pretrained(module.net, config.backbone_weights, parts=("net.backbone",), log=log)
    if config.init_checkpoint and not resume:
        load_pretrained(module.net, config.init_checkpoint, module.layer, log=log)
    module = module.to(device)
    optimizer = torch.optim.Adam(module.parameter_groups())

    length = config.schedule_steps or config.steps

    def schedule(step: int) -> float:
        warm = min(1.0, (step + 1) / max(1, config.warmup))
        return warm * (1 - min(step, length - 1) / max(1, length)) ** config.poly_power

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
    step, last_loss, result = 0, float("nan"), {}
    checkpoint_path = output / "checkpoint.pt"
    if resume:
        state = load_checkpoint(checkpoint_path)
        _check_resumed_config(config, state.get("config", {}))
        module.load_state_dict(state["module"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step = state["step"]
        torch.set_rng_state(state["rng"])
    wrapped = nn.parallel.DistributedDataParallel(module) if world > 1 else module
    scaler = torch.amp.GradScaler(enabled=config.amp and device.type == "cuda")
    writer, log = None, None
    if rank == 0:
        log = _truncated_log(output / "log.csv", step)
        try:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides the interrupted run's events after the resumed checkpoint
            writer = SummaryWriter(str(output / "tensorboard"), purge_step=step + 1)
        except ImportError:  # TensorBoard is optional
            writer = None
    module.train()
    bar = tqdm(total=config.steps, initial=step, disable=rank != 0, desc=config.stage)
    while step < min(config.steps, stop_at or config.steps):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for micro in range(config.accumulate):
            indices, epoch = _batch_indices(
                len(train_set), step * config.accumulate + micro, config, rank, world
            )
            train_set.epoch = epoch
            batch = {
                k: v.to(device) if torch.is_tensor(v) else v
                for k, v in _collate([train_set[i] for i in indices]).items()
            }
            with torch.autocast(device.type, enabled=scaler.is_enabled()):
                loss = wrapped(batch, config.seed * 1_000_003 + step) / config.accumulate
            scaler.scale(loss).backward()
            total += loss.item()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        last_loss = total
        bar.update(1)
        bar.set_postfix(loss=f"{total:.4f}")
        if rank == 0:
            elapsed = time.perf_counter() - started
            csv.writer(log).writerow([step, total, scheduler.get_last_lr()[0], elapsed])
            log.flush()
            if writer is not None:
                writer.add_scalar(f"{config.stage}/loss", total, step)
                writer.add_scalar(f"{config.stage}/lr", scheduler.get_last_lr()[0], step)
                writer.add_scalar(f"{config.stage}/step_seconds", elapsed, step)
            if step % config.checkpoint_every == 0 or step == config.steps:
                save_checkpoint(
                    checkpoint_path,
                    {"module": module.state_dict(),
                     **model_entries(module.net, module.layer, train_set.categories),
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                     "step": step, "rng": torch.get_rng_state(),
                     "config": dataclasses.asdict(config)},
                )  # fmt: skip
            if step % config.validate_every == 0 or step == config.steps:
                result = validate(module, val_set, device)
                if writer is not None:
                    writer.add_scalar(f"{config.stage}/val_pq", result["All"]["pq"], step)
    bar.close()
    if log is not None:
        log.close()
    if writer is not None:
        writer.close()
    if lock is not None:
        lock.close()
    return {"loss": last_loss, "validation": result, "step": step, "module": module}
