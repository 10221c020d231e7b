"""Passive OpenMP waiting, chosen before torch loads its OpenMP runtime (imported first by
``gpucops/__init__.py``).

torch's CPU build and gpucops' host-built kernels share one OpenMP runtime (torch's bundled libgomp;
the host library's ``libgomp.so.1`` resolves to it by soname), and libgomp's default is to spin for
about 3 ms (``GOMP_SPINCOUNT`` 300,000) after every parallel region before sleeping. A solve runs
hundreds of short regions separated by serial work, so the idle worker spins most of the time; on a
machine with a busy neighbour the spinning thread, the thread doing the work and the neighbour
share the cores, and a barrier can wait on a descheduled thread: a fine-tuning step took 9–13 s
instead of 0.7 s (``benchmarks/contention.py``). ``OMP_WAIT_POLICY=PASSIVE`` (OpenMP's standard
variable) makes idle threads sleep at once; quiet runs pay a few percent.

libgomp reads its environment once, when it is loaded (at ``import torch``), so this only takes
effect when gpucops is imported before torch — as the ``gpucops`` command, ``train/train.py`` and
``torchrun`` runs of it do. A value the user set (``OMP_WAIT_POLICY`` or ``GOMP_SPINCOUNT``) is
kept.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def prefer_passive_waiting() -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` if torch is not loaded yet and the user chose no policy;
    returns whether it was set."""
    if "torch" in sys.modules or "OMP_WAIT_POLICY" in os.environ or "GOMP_SPINCOUNT" in os.environ:
        return False
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return True


prefer_passive_waiting()


@contextmanager
def threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count is ``count`` inside the block (None: unchanged), then back.

    One OpenMP runtime serves torch and the host-built kernels, and ``torch.set_num_threads`` sets
    that runtime's thread count for the calling thread, so this also sizes the solver's parallel
    regions on the CPU (a 256×512 solve: 0.22 s on two threads, 0.28 s on one).
    """
    import torch

    previous = torch.get_num_threads()
    if count is None or count == previous:
        yield
        return
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)
