"""Training of COPS: baseline pre-training and the fully differentiable stage, in one process or
under ``torchrun`` (DistributedDataParallel: nccl on GPUs, gloo on CPUs).

``train/train.py --config CONFIG.yaml`` drives :func:`train`. A run is a pure function of its
config and its step: the batch of step s (each rank's share of a per-epoch permutation seeded by
(seed, epoch), read by a DataLoader's ``workers``), the augmentation (seeded by (seed, epoch,
index)), the cost dropout and the λ draw
(seeded by (seed, step)); the global torch RNG state (decoder dropout) is saved in every
checkpoint. So ``--resume`` continues exactly. Checkpoints are written atomically (temporary file,
fsync, rename; :mod:`gpucops.checkpoint`): a run killed mid-write leaves the previous checkpoint
intact. Validation is sharded over the ranks and its PQ sums merged exactly.
"""

from __future__ import annotations

import dataclasses
import fcntl
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from PIL import Image
from torch import nn
from tqdm import tqdm

from ._openmp import threads
from .checkpoint import load_checkpoint, model_entries, save_checkpoint
from .data import (
    CityscapesPanoptic,
    CocoPanoptic,
    PanopticDataset,
    panoptic_segments,
    write_synthetic_cityscapes,
)
from .layer import AMWCLayer
from .losses import (
    affinity_pretraining_loss,
    edge_f1_loss,
    node_l1_loss,
    panoptic_quality_loss,
    semantic_pretraining_loss,
)
from .metrics import PanopticQuality
from .model import COPSNet, ModelConfig, load_pretrained
from .run_records import RunLog, keep_snapshot, write_config
from .visualize import comparison

# the network's batch norms, plain or converted for distributed training
BATCH_NORMS = (nn.BatchNorm2d, nn.SyncBatchNorm)

__all__ = ["TrainConfig", "TrainingModule", "cpu_threads", "model_config", "train"]


# loss terms of each fine-tuning loss (TrainConfig.finetune_loss), logged apart
FINETUNE_LOSSES = {"pq_surrogate": ("pq_surrogate",), "separate": ("node_l1", "edge_f1")}


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
    # finetune: pq_surrogate (the paper: PQ surrogate through the AMWC→MWC backward) or
    # separate (supplementary A.3, Table 4: node L1 + edge F1 on the AMWC's class and cut labels,
    # the AMWC itself perturbed; weighted by pq_loss_weight, edges by the affinity weights)
    finetune_loss: str = "pq_surrogate"
    lambda_range: tuple[float, float] = (1.0, 5000.0)
    samples: int = 5
    cost_dropout: float = 0.1
    thing_area: float = 50.0  # foreground-probability thresholds, in grid pixels
    stuff_area: float = 128.0
    solver_method: str = "parallel"
    # DataLoader processes reading and augmenting training images (0: in the training process);
    # pinned host memory when training on GPUs
    workers: int = 0
    # BatchNorm statistics synchronised over the processes of a multi-GPU run (SyncBatchNorm; one
    # process or CPUs have nothing to synchronise)
    sync_batchnorm: bool = True
    # threads of the CPU work, network and solver (None: 1 for the tiny model without a GPU,
    # see cpu_threads; torch's default otherwise)
    cpu_threads: int | None = None
    amp: bool = True  # mixed precision on GPUs
    seed: int = 0
    output_dir: str = "runs/synthetic"
    checkpoint_every: int = 50
    validate_every: int = 50
    # snapshot_<step>.pt kept beside checkpoint.pt at each checkpoint, the newest this many
    keep_snapshots: int = 3
    # validation images drawn to TensorBoard (image | prediction | ground truth) per validation
    overlay_images: int = 3

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
        if config.finetune_loss not in FINETUNE_LOSSES:
            raise ValueError(f"{path}: finetune_loss must be one of {list(FINETUNE_LOSSES)}, "
                             f"got {config.finetune_loss!r}")  # fmt: skip
        for key in ("batch_size", "accumulate", "checkpoint_every", "validate_every", "samples"):
            if getattr(config, key) < 1:
                raise ValueError(f"{path}: {key} must be ≥ 1, got {getattr(config, key)}")
        threads = config.cpu_threads
        if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int)
                                    or threads < 1):  # fmt: skip
            raise ValueError(f"{path}: cpu_threads must be an integer ≥ 1, got {threads!r}")
        for key in ("keep_snapshots", "overlay_images", "workers"):
            if getattr(config, key) < 0:
                raise ValueError(f"{path}: {key} must be ≥ 0, got {getattr(config, key)}")
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

    def loss_parts(self) -> tuple[str, ...]:
        """Names of the terms :meth:`forward` returns (their sum is the training loss)."""
        if self.config.stage == "pretrain":
            return ("semantic", "affinity")
        return FINETUNE_LOSSES[self.config.finetune_loss]

    def forward(self, batch: dict, step_seed: int) -> dict[str, torch.Tensor]:
        """The loss terms of the stage by name (:meth:`loss_parts`), logged apart."""
        semantic, affinity = self.net(batch["image"])
        config = self.config
        if config.stage == "pretrain":
            return {
                "semantic": semantic_pretraining_loss(
                    semantic.float(), batch["semantic"], batch["semantic_weight"],
                    config.semantic_top_k,
                ),
                "affinity": affinity_pretraining_loss(
                    affinity.float(), batch["affinity_target"], batch["affinity_weight"],
                    config.affinity_top_k, config.affinity_loss_weight,
                ),
            }  # fmt: skip
        if config.finetune_loss == "separate":
            return self._separate_losses(semantic, affinity, batch, step_seed)
        out = self.layer(
            semantic.float(), affinity.float(), batch["classes"], batch["segments"],
            batch["void"], seed=step_seed,
        )  # fmt: skip
        return {
            "pq_surrogate": panoptic_quality_loss(
                out.prediction, out.target, out.channel_classes, self.area_thresholds,
                (~batch["void"]).float(), config.pq_loss_weight,
            )
        }  # fmt: skip

    def _separate_losses(
        self, semantic: torch.Tensor, affinity: torch.Tensor, batch: dict, step_seed: int
    ) -> dict[str, torch.Tensor]:
        """Supplementary A.3: eq. 8 on the AMWC's class one-hot (void pixels weight 0) and eq. 9
        on its cuts (the pre-training affinity weights: things up-weighted, void edges 0)."""
        classes, cuts = self.layer.labels(
            semantic.float(), affinity.float(), batch["void"], seed=step_seed
        )
        target = F.one_hot(batch["classes"].clamp(min=0), classes.shape[1]).permute(0, 3, 1, 2)
        node = node_l1_loss(classes, target, (~batch["void"]).float())
        edge = edge_f1_loss(cuts, batch["affinity_target"], batch["affinity_weight"])
        weight = self.config.pq_loss_weight
        return {"node_l1": weight * node, "edge_f1": weight * edge}

    def parameter_groups(self) -> list[dict]:
        """Pre-training: the network at the base LR. Fine-tuning (§4.6): backbone, decoders and
        batch norms frozen; heads at LR/40 (semantic), LR/60 (affinity), classifier bodies LR/40,
        last layers LR/20, the cost scalars at LR. Each group has a ``name`` (the log's
        ``lr_<name>`` column)."""
        lr = self.config.lr
        if self.config.stage == "pretrain":
            self.layer.requires_grad_(False)  # the cost scalars have no pre-training loss
            trainable = [p for p in self.parameters() if p.requires_grad]
            return [{"params": trainable, "lr": lr, "name": "net"}]
        for part in (self.net.backbone, self.net.semantic_decoder, self.net.affinity_decoder):
            part.requires_grad_(False)
        for module in self.net.modules():
            if isinstance(module, BATCH_NORMS):
                module.requires_grad_(False)
        net = self.net
        groups = [
            ("semantic_head", net.semantic_head, lr / 40),
            ("semantic_predictor", net.semantic_predictor, lr / 20),
            ("affinity_head", net.affinity_head, lr / 60),
            *[(f"classifier{i}_body", c["body"], lr / 40) for i, c in enumerate(net.classifiers)],
            *[(f"classifier{i}_last", c["last"], lr / 20) for i, c in enumerate(net.classifiers)],
            ("cost_scalars", self.layer, lr),
        ]  # fmt: skip
        return [
            {"params": [p for p in m.parameters() if p.requires_grad], "lr": rate, "name": name}
            for name, m, rate in groups
        ]

    def train(self, mode: bool = True) -> TrainingModule:
        super().train(mode)
        if mode and self.config.stage == "finetune":  # frozen batch norm statistics
            for module in self.net.modules():
                if isinstance(module, BATCH_NORMS):
                    module.eval()
        return self


def with_sync_batch_norms(
    module: TrainingModule, device: torch.device, world: int
) -> TrainingModule:
    """``module`` with its batch norms synchronised over the processes (SyncBatchNorm, same
    parameters and statistics) when ``world > 1`` processes train on GPUs and the config's
    ``sync_batchnorm`` is on; otherwise ``module`` itself."""
    if world > 1 and device.type == "cuda" and module.config.sync_batchnorm:
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return module


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


class _StepBatches(torch.utils.data.Sampler):
    """The distributed sampler: this rank's share (:func:`_batch_indices`) of the global batch of
    each micro-step from ``start`` to ``stop``, as ``(index, epoch)`` pairs. Not torch's
    ``DistributedSampler``: here a global batch holds the same images whatever the number of
    processes, and a resumed run starts at its own micro-step, mid-epoch."""

    def __init__(self, size: int, config: TrainConfig, rank: int, world: int, start: int,
                 stop: int):  # fmt: skip
        self.size, self.config, self.rank, self.world = size, config, rank, world
        self.start, self.stop = start, stop

    def __iter__(self):
        for micro_step in range(self.start, self.stop):
            indices, epoch = _batch_indices(
                self.size, micro_step, self.config, self.rank, self.world
            )
            yield [(index, epoch) for index in indices]

    def __len__(self) -> int:
        return max(0, self.stop - self.start)


class _EpochItems(torch.utils.data.Dataset):
    """``items[(index, epoch)]`` = ``dataset[index]`` augmented as in ``epoch``: the epoch travels
    with the index because a DataLoader worker holds its own copy of the dataset."""

    def __init__(self, dataset: PanopticDataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, self.dataset.epoch = key
        return self.dataset[index]


def training_batches(
    dataset: PanopticDataset, config: TrainConfig, rank: int, world: int, start: int, stop: int,
    pin_memory: bool = False,
) -> torch.utils.data.DataLoader:  # fmt: skip
    """Collated batches of micro-steps ``start … stop − 1`` for this rank, read by
    ``config.workers`` processes. The loader's own seed comes from a generator of the run's
    seed, so creating it leaves the global RNG (saved in checkpoints) untouched."""
    return torch.utils.data.DataLoader(
        _EpochItems(dataset),
        batch_sampler=_StepBatches(len(dataset), config, rank, world, start, stop),
        num_workers=config.workers, collate_fn=_collate, pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(config.seed),
    )  # fmt: skip


# TensorBoard overlays at most this high: a Cityscapes triple at full size is 1024×6144 pixels,
# megabytes per picture in the event file at every validation
OVERLAY_HEIGHT = 512


def _thumbnail(picture: np.ndarray, height: int) -> np.ndarray:
    """``picture [H, W, 3]`` uint8 scaled down to ``height`` rows (kept if not higher)."""
    if picture.shape[0] <= height:
        return picture
    width = round(picture.shape[1] * height / picture.shape[0])
    return np.asarray(Image.fromarray(picture).resize((width, height), Image.BILINEAR))


@torch.no_grad()
def validate(
    module: TrainingModule, dataset, device: torch.device, overlays: list | None = None,
    rank: int = 0, world: int = 1,
) -> dict:  # fmt: skip
    """PQ of the solved labelings against the stride-grid ground truth. Under ``world > 1``
    processes (every rank calls it) each rank takes images ``rank, rank + world, …`` and the
    accumulators are merged on every rank: the result equals one process's, bit for bit. With
    ``overlays`` (a list), the first ``module.config.overlay_images`` of this rank's images are
    appended to it as [image | prediction | ground truth] ``[H, W, 3]`` uint8 pictures."""
    module.eval()
    partitionable = module.layer.partitionable.cpu()
    metric = PanopticQuality({k: bool(t) for k, t in enumerate(partitionable.tolist())})
    category_ids = list(range(len(partitionable)))  # category = class index
    for position, index in enumerate(range(rank, len(dataset), world)):
        item = _collate([dataset[index]])
        semantic, affinity = module.net(item["image"].to(device))
        labeling = module.layer(semantic.float(), affinity.float()).labeling
        predicted = (labeling.classes[0].cpu(), labeling.segments[0].cpu())
        truth = (item["classes"][0], item["segments"][0])
        metric.update(
            *panoptic_segments(*truth, category_ids), *panoptic_segments(*predicted, category_ids)
        )
        if overlays is not None and position < module.config.overlay_images:
            image = item["image"][0].permute(1, 2, 0).clamp(0, 255).to(torch.uint8).numpy()
            picture = comparison(
                image, [predicted, truth], partitionable, ["image", "prediction", "ground truth"]
            )
            overlays.append(_thumbnail(picture, OVERLAY_HEIGHT))
    module.train()
    if world > 1:
        shards = [None] * world
        dist.all_gather_object(shards, metric.state())
        metric = PanopticQuality.from_state(shards[0])
        for shard in shards[1:]:
            metric.merge(PanopticQuality.from_state(shard))
    return metric.compute()


# config keys that may change at --resume without changing the run (paths, and how often it
# saves or validates); any other change would make the resumed run another run
_FREE_AT_RESUME = frozenset(
    {"output_dir", "data_root", "init_checkpoint", "backbone_weights", "checkpoint_every",
     "validate_every", "keep_snapshots", "overlay_images"}
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


def cpu_threads(config: TrainConfig) -> int | None:
    """Threads of a training process's CPU work (``TrainConfig.cpu_threads``; if unset: 1 for
    the tiny model on a machine without a GPU, otherwise None = torch's default, unchanged).
    The tiny model's step is hundreds of short parallel regions (network ops and solver rounds),
    each ending at a barrier: beside a busy neighbour one of two threads is often descheduled and
    every region waits for it, so a step took 2.7× as long (0.62 → 1.67 s) while one thread ran
    it in 0.73 s quiet and 0.72 s busy (``benchmarks/contention.py``). One thread per process is
    also torchrun's default."""
    if config.cpu_threads is not None:
        return config.cpu_threads
    return 1 if config.model == "tiny" and not torch.cuda.is_available() else None


def train(config: TrainConfig, resume: bool = False, stop_at: int | None = None) -> dict:
    """Run (or continue) a training run; returns the final loss, the last validation result,
    the step and the trained :class:`TrainingModule`. ``stop_at`` ends the run early at that
    step (as if killed there; the schedule stays that of ``config.steps``). A CPU run uses
    :func:`cpu_threads` threads."""
    with threads(cpu_threads(config)):
        return _train(config, resume, stop_at)


def _train(config: TrainConfig, resume: bool, stop_at: int | None) -> dict:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    device = torch.device(
        f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}" if torch.cuda.is_available() else "cpu"
    )
    if device.type == "cuda":
        # the ranks' collectives (validation's all_gather_object) use the current device
        torch.cuda.set_device(device)
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
    module = with_sync_batch_norms(module, device, world).to(device)
    groups = module.parameter_groups()
    group_names = [group["name"] for group in groups]  # older checkpoints store no names
    optimizer = torch.optim.Adam(groups)

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
    records = _Records(output, config, module, group_names, step) if rank == 0 else None
    module.train()
    bar = tqdm(total=config.steps, initial=step, disable=rank != 0, desc=config.stage)
    last = min(config.steps, stop_at or config.steps)
    batches = iter(training_batches(
        train_set, config, rank, world, step * config.accumulate, last * config.accumulate,
        pin_memory=device.type == "cuda",
    ))  # fmt: skip
    while step < last:
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        parts = dict.fromkeys(module.loss_parts(), 0.0)
        for _ in range(config.accumulate):
            batch = {
                k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v
                for k, v in next(batches).items()
            }
            with torch.autocast(device.type, enabled=scaler.is_enabled()):
                terms = wrapped(batch, config.seed * 1_000_003 + step)
                loss = sum(terms.values()) / config.accumulate
            scaler.scale(loss).backward()
            for name, term in terms.items():
                parts[name] += term.item() / config.accumulate
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        step += 1
        last_loss = sum(parts.values())
        bar.update(1)
        bar.set_postfix(loss=f"{last_loss:.4f}")
        seconds = time.perf_counter() - started
        saving = step % config.checkpoint_every == 0 or step == config.steps
        validating = step % config.validate_every == 0 or step == config.steps
        if validating:  # every rank validates its shard
            overlays = [] if records is not None else None
            result = validate(module, val_set, device, overlays, rank, world)
        if records is None:
            continue
        records.step(step, last_loss, parts, scheduler.get_last_lr(), seconds)
        if not (saving or validating):
            continue
        trained = {
            "module": module.state_dict(),
            **model_entries(module.net, module.layer, train_set.categories),
            "step": step, "config": dataclasses.asdict(config),
        }  # fmt: skip
        if saving:
            records.checkpoint(
                step,
                {**trained, "optimizer": optimizer.state_dict(),
                 "scheduler": scheduler.state_dict(), "rng": torch.get_rng_state()},
            )  # fmt: skip
        if validating:
            records.validation(step, result, overlays, {**trained, "validation": result})
    del batches  # the loader's workers end here, not when the function returns
    bar.close()
    if records is not None:
        records.close()
    if lock is not None:
        lock.close()
    return {"loss": last_loss, "validation": result, "step": step, "module": module, "rank": rank}


class _Records:
    """Rank 0's files in the run folder: ``config.yaml`` (at start), ``log.csv`` (a row per
    step: loss, its terms, the LR of each parameter group, seconds), TensorBoard (the same, the
    validation PQ and overlay images), ``checkpoint.pt`` with its ``snapshot_<step>.pt`` copies,
    and ``best.pt`` (the network of the best validation PQ so far)."""

    def __init__(
        self, output: Path, config: TrainConfig, module: TrainingModule, groups: list[str],
        step: int,
    ):  # fmt: skip
        self.output, self.config = output, config
        write_config(output / "config.yaml", dataclasses.asdict(config))
        self.parts = module.loss_parts()
        self.groups = groups
        columns = ["step", "loss", *[f"loss_{p}" for p in self.parts],
                   *[f"lr_{g}" for g in groups], "seconds"]  # fmt: skip
        self.log = RunLog(output / "log.csv", columns, step)
        self.best = -math.inf
        best = output / "best.pt"
        if step and best.is_file():  # the best of the run resumed (none when starting afresh)
            self.best = load_checkpoint(best).get("validation", {}).get("All", {}).get("pq", 0.0)
        try:
            from torch.utils.tensorboard import SummaryWriter

            # purge_step hides the interrupted run's events after the resumed checkpoint
            self.writer = SummaryWriter(str(output / "tensorboard"), purge_step=step + 1)
        except ImportError:  # TensorBoard is optional
            self.writer = None

    def step(self, step: int, loss: float, parts: dict, lrs: list[float], seconds: float) -> None:
        stage = self.config.stage
        row = {"step": step, "loss": loss, "seconds": seconds}
        row |= {f"loss_{name}": value for name, value in parts.items()}
        row |= {f"lr_{name}": lr for name, lr in zip(self.groups, lrs, strict=True)}
        self.log.write(row)
        if self.writer is None:
            return
        self.writer.add_scalar(f"{stage}/loss", loss, step)
        for name, value in parts.items():
            self.writer.add_scalar(f"{stage}/loss_{name}", value, step)
        for name, lr in zip(self.groups, lrs, strict=True):
            self.writer.add_scalar(f"{stage}/lr_{name}", lr, step)
        self.writer.add_scalar(f"{stage}/step_seconds", seconds, step)

    def checkpoint(self, step: int, state: dict) -> None:
        path = self.output / "checkpoint.pt"
        save_checkpoint(path, state)
        keep_snapshot(path, step, self.config.keep_snapshots)

    def validation(self, step: int, result: dict, overlays: list, state: dict) -> None:
        """Log the validation ``result``; write ``state`` (the network, without the optimizer)
        as ``best.pt`` when its PQ is the best so far."""
        pq = result["All"]["pq"]
        if pq > self.best:
            self.best = pq
            save_checkpoint(self.output / "best.pt", state)
        if self.writer is None:
            return
        stage = self.config.stage
        self.writer.add_scalar(f"{stage}/val_pq", pq, step)
        for index, picture in enumerate(overlays):
            self.writer.add_image(f"{stage}/val_overlay_{index}", picture, step, dataformats="HWC")

    def close(self) -> None:
        self.log.close()
        if self.writer is not None:
            self.writer.close()
