"""Run by tests/test_training.py under ``torchrun --nproc_per_node=2`` (gloo, CPU): two steps
through ``train/train.py`` (which prints its summary on rank 0 only), then every rank must hold
the same parameters, each rank must have validated its own share of the 5 validation images, and
the merged validation must equal one process's evaluation of all of them."""

import importlib.util
import sys
from pathlib import Path

import torch
import torch.distributed as dist

import gpucops.trainer

spec = importlib.util.spec_from_file_location(
    "train_script", Path(__file__).resolve().parent.parent / "train" / "train.py"
)
script = importlib.util.module_from_spec(spec)
spec.loader.exec_module(script)
updates = []  # images each rank's PQ accumulator saw
update = gpucops.trainer.PanopticQuality.update
gpucops.trainer.PanopticQuality.update = lambda self, *a: updates.append(1) or update(self, *a)
result = {}
script.train = lambda *args, **kwargs: (
    result.update(gpucops.trainer.train(*args, **kwargs)) or result
)
code = script.main([
    "--config", sys.argv[1], "--set", f"output_dir={sys.argv[2]}", "steps=2",
    f"data_root={sys.argv[2]}_data", "synthetic_images=[4, 5]", "workers=1",
])  # fmt: skip
if code:
    sys.exit(code)
flat = torch.cat([p.detach().flatten() for p in result["module"].parameters()])
gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
dist.all_gather(gathered, flat)
shares = [None] * dist.get_world_size()
dist.all_gather_object(shares, len(updates))
if dist.get_rank() == 0:
    same = all(torch.equal(gathered[0], other) for other in gathered[1:])
    print("ranks equal" if same else "ranks differ", flush=True)
    print(f"validation shares {shares}", flush=True)
    config = result["module"].config
    _, val_set = gpucops.trainer._datasets(config)
    alone = gpucops.trainer.validate(result["module"], val_set, torch.device("cpu"))
    print("validation equal" if alone == result["validation"] else "validation differs", flush=True)
dist.destroy_process_group()
