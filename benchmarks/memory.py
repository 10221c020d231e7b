"""Peak memory of ``gpucops predict`` per image on the CPU: the network (tiny and full presets,
K = 19, D = (1, 4, 16, 32, 64)) and the solver at stride 4 and at full resolution, for a few image
sizes; each cell in a fresh process (peak RSS after the checkpoint is loaded, minus the RSS
before the prediction). The per-pixel slopes feed the up-front estimate of
``gpucops.inference.Predictor.memory_estimate``.

    .venv/bin/python benchmarks/memory.py
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

SIZES = ((256, 512), (512, 1024))


def _rss_bytes() -> int:
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * resource.getpagesize()


def child(model: str, height: int, width: int, full_resolution: bool) -> None:
    import torch
    from torch import nn

    from gpucops.checkpoint import model_entries, save_checkpoint
    from gpucops.inference import Predictor
    from gpucops.layer import AMWCLayer
    from gpucops.model import COPSNet, ModelConfig

    distances = (1, 4, 16, 32, 64)
    partitionable = torch.arange(19) >= 11  # Cityscapes: 11 stuff, 8 thing classes
    net = COPSNet(ModelConfig.preset(model, num_classes=19, distances=distances))
    layer = AMWCLayer(partitionable, distances)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "c.pt"
        module = nn.ModuleDict({"net": net, "layer": layer})
        save_checkpoint(path, {"module": module.state_dict(), **model_entries(net, layer, None)})
        del net, layer, module
        predictor = Predictor(path)
    images = torch.randint(0, 256, (1, 3, height, width), dtype=torch.uint8)
    before = _rss_bytes()
    predictor(images, full_resolution=full_resolution)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(json.dumps({"bytes": peak - before}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        model, height, width, full = args.child
        child(model, int(height), int(width), full == "full")
        return
    from gpucops.cli import format_table

    rows = []
    for model in ("tiny", "full"):
        for resolution in ("stride4", "full"):
            cells = []
            for height, width in SIZES:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", model, str(height), str(width),
                     resolution], capture_output=True, text=True, check=True,
                )  # fmt: skip
                cells.append((height * width, json.loads(out.stdout.splitlines()[-1])["bytes"]))
            (p0, b0), (p1, b1) = cells
            slope = (b1 - b0) / (p1 - p0)
            rows.append(
                [model, resolution, *(f"{b / 2**20:.0f}" for _, b in cells), f"{slope:.0f}"]
            )
    headers = ["model", "solve at", *(f"MiB {h}×{w}" for h, w in SIZES), "bytes / image pixel"]
    print(format_table(headers, rows))


if __name__ == "__main__":
    main()
