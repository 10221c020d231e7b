"""The CUDA launch path of :class:`~gpucops.solver.backend.KernelSteps` on CPU tensors.

:func:`cuda_launch_path` switches the host's kernels onto the code that launches them on a GPU —
device selection, stream handling, raw-pointer arguments, the module's compile options — with a
stand-in for CuPy whose kernels are the host build's (taking the arguments as CuPy would pass
them: 8-byte numpy scalars), and with recording stand-ins for torch's CUDA streams. What a
first GPU run would trip over in that code shows here, without one.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy
import pytest
import torch

from gpucops.solver import backend
from gpucops.solver.backend import KernelSteps, host_library, steps_for


@contextlib.contextmanager
def _entered(stack: list, value: object) -> Iterator[None]:
    """``value`` on top of ``stack`` within the block (the current device or stream)."""
    stack.append(value)
    yield
    stack.pop()


@dataclass(eq=False)
class Stream:
    """A recording stand-in for ``torch.cuda.Stream``."""

    cuda_stream: int
    waited_for: list[Stream] = field(default_factory=list)

    def wait_stream(self, other: Stream) -> None:
        self.waited_for.append(other)


@dataclass
class StandIn:
    """What the launch path did: the context of every launch, the compiled programs, the
    streams the kept buffers recorded."""

    library: ctypes.CDLL
    current: Stream = field(default_factory=lambda: Stream(7))
    device: list[int | None] = field(default_factory=list)  # CuPy's device stack
    stream: list[tuple[int, int | None]] = field(default_factory=list)
    launches: list[tuple[int | None, tuple[int, int | None] | None]] = field(default_factory=list)
    programs: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    recorded: list[tuple[int, Stream]] = field(default_factory=list)

    # the parts of CuPy the launch path uses
    @property
    def cuda(self) -> StandIn:
        return self

    def Device(self, index: int | None) -> contextlib.AbstractContextManager:
        return _entered(self.device, index)

    def ExternalStream(
        self, pointer: int, device_id: int | None
    ) -> contextlib.AbstractContextManager:
        return _entered(self.stream, (pointer, device_id))

    def RawModule(self, code: str, options: tuple[str, ...]) -> StandIn:
        self.programs.append((code, options))
        return self

    def get_function(self, name: str):
        def launch(grid: tuple[int], block: tuple[int], args: tuple) -> None:
            assert grid[0] * block[0] > 0
            # what CuPy passes by value as 8 bytes: integers and pointers as numpy scalars
            assert all(type(a) in (numpy.int64, numpy.uint64) for a in args), args
            self.launches.append(
                (self.device[-1] if self.device else None, self.stream[-1] if self.stream else None)
            )
            getattr(self.library, name)(*map(int, args))

        return launch

    # the parts of torch.cuda the launch path uses
    def current_stream(self, device: torch.device | None = None) -> Stream:
        return self.current


@contextlib.contextmanager
def cuda_launch_path(monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    """Within: this thread's host kernels (:func:`steps_for` of the CPU) launch through the CUDA
    path with a :class:`StandIn` for CuPy, which the block gets to inspect."""
    standin = StandIn(host_library())
    steps = steps_for(torch.device("cpu"))
    assert isinstance(steps, KernelSteps)
    with monkeypatch.context() as patch:
        backend._cuda_module.cache_clear()
        backend._cuda_function.cache_clear()
        patch.setitem(sys.modules, "cupy", standin)
        patch.setattr(torch.cuda, "current_stream", standin.current_stream)
        patch.setattr(
            torch.Tensor,
            "record_stream",
            lambda tensor, stream: standin.recorded.append((tensor.data_ptr(), stream)),
        )
        patch.setattr(steps, "_cuda_launches", True)
        patch.setattr(steps, "_stream", None)
        try:
            yield standin
        finally:
            backend._cuda_module.cache_clear()
            backend._cuda_function.cache_clear()
