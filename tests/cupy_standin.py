"""The CUDA launch path of :class:`~gpucops.solver.backend.KernelSteps` on CPU tensors.

:func:`cuda_launch_path` switches the host's kernels onto the code that launches them on a GPU —
device selection, stream handling, DLPack exports, the module's compile options — with a stand-in
for CuPy whose exports are torch's real ``__dlpack__`` (which refuses what CuPy would refuse) and
whose kernels are the host build's, and with recording stand-ins for torch's CUDA streams. What a
first GPU run would trip over in that code shows here, without one.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

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
    """What the launch path did: the context of every export, the compiled programs, the
    streams the kept buffers recorded."""

    library: ctypes.CDLL
    current: Stream = field(default_factory=lambda: Stream(7))
    device: list[int | None] = field(default_factory=list)  # CuPy's device stack
    torch_device: list[int | None] = field(default_factory=list)
    stream: list[tuple[int, int | None]] = field(default_factory=list)
    exports: list[tuple[int | None, int | None, tuple[int, int | None] | None]] = field(
        default_factory=list
    )
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

    def from_dlpack(self, tensor: torch.Tensor) -> torch.Tensor:
        exported = torch.from_dlpack(tensor)  # torch's own export: BufferError where CuPy's is
        self.exports.append(
            (
                self.device[-1] if self.device else None,
                self.torch_device[-1] if self.torch_device else None,
                self.stream[-1] if self.stream else None,
            )
        )
        return exported

    def RawModule(self, code: str, options: tuple[str, ...]) -> StandIn:
        self.programs.append((code, options))
        return self

    def get_function(self, name: str):
        def launch(grid: tuple[int], block: tuple[int], args: tuple) -> None:
            assert grid[0] * block[0] > 0
            values = [a.data_ptr() if isinstance(a, torch.Tensor) else int(a) for a in args]
            getattr(self.library, name)(*values)

        return launch

    # the parts of torch.cuda the launch path uses
    def torch_cuda_device(self, index: int | None) -> contextlib.AbstractContextManager:
        return _entered(self.torch_device, index)

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
        patch.setitem(sys.modules, "cupy", standin)
        patch.setattr(torch.cuda, "current_stream", standin.current_stream)
        patch.setattr(torch.cuda, "device", standin.torch_cuda_device)
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
