"""The machine id that names a benchmark baseline folder, ``benchmarks/baselines/<id>/``, and the
timer its suites run with.

    .venv/bin/python benchmarks/machine_id.py          # e.g. x86_64-2c-amd-epyc
    .venv/bin/python benchmarks/machine_id.py --timer  # time.process_time (no GPU)

``<architecture>-<logical CPUs>c-<CPU model>``, plus ``-<GPU name>`` where CUDA is present: what
sets a suite's speed and stays the same across reboots and runs on one kind of machine (no host
name, no clock speed, no memory size). Baselines compare only within one id; pytest-benchmark
keeps a further folder per Python implementation and version inside it.

The timer: without a GPU the suites time the process's CPU seconds (all its threads), which a
busy neighbour on a shared VM inflates far less than wall-clock seconds (benchmarks/RESULTS.md:
the worst rise between two runs 47 % against 345 %, 10 and 5 runs at load 4–10 on 2 cores);
with one, wall-clock seconds, since the GPU's work is no CPU time of the process.
"""

from __future__ import annotations

import os
import platform
import re
import sys
from pathlib import Path

__all__ = ["cpu_model", "machine_id", "slug", "timer"]


def slug(text: str) -> str:
    """Lower case, runs of anything but letters and digits as one ``-``; ``(R)``/``(TM)`` and
    the words "processor" and "cpu" dropped (vendors' decorations, not the model)."""
    text = re.sub(r"\((r|tm)\)|\b(processor|cpu)\b", " ", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-") or "unknown"


def cpu_model(cpuinfo: str | None = None) -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux; its text may be given), else what
    :func:`platform.processor` says."""
    if cpuinfo is None:
        path = Path("/proc/cpuinfo")
        cpuinfo = path.read_text() if path.is_file() else ""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() in ("model name", "Model", "Hardware") and value.strip():
            return value.strip()
    return platform.processor() or "unknown"


def machine_id(cores: int | None = None, model: str | None = None, gpu: str | None = None) -> str:
    """The id of this machine (arguments override what is detected; ``gpu=""``: none)."""
    cores = os.cpu_count() if cores is None else cores
    model = cpu_model() if model is None else model
    if gpu is None:
        import torch  # here, not at the top: the Makefile's call without a GPU stays quick

        gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    parts = [platform.machine() or "unknown", f"{cores}c", slug(model)]
    return "-".join(parts + ([slug(gpu)] if gpu else []))


def timer(cuda: bool | None = None) -> str:
    """pytest-benchmark's ``--benchmark-timer`` for this machine (see the module docstring)."""
    if cuda is None:
        import torch

        cuda = torch.cuda.is_available()
    return "time.perf_counter" if cuda else "time.process_time"


if __name__ == "__main__":
    print(timer() if sys.argv[1:] == ["--timer"] else machine_id())
