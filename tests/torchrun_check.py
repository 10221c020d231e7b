"""Run by tests/test_training.py under ``torchrun --nproc_per_node=2`` (gloo, CPU): two steps,
then every rank must hold the same parameters."""

import sys

import torch
import torch.distributed as dist

from gpucops.trainer import TrainConfig, train

config = TrainConfig.from_yaml(sys.argv[1], {"output_dir": sys.argv[2], "steps": 2})
module = train(config)["module"]
flat = torch.cat([p.detach().flatten() for p in module.parameters()])
gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
if dist.get_rank() == 0:
    same = all(torch.equal(gathered[0], other) for other in gathered[1:])
    print("ranks equal" if same else "ranks differ", flush=True)
dist.destroy_process_group()
