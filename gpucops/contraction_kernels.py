"""Launchers of the contraction kernels in ``cuda/contraction.cu``, for the host and for CUDA.

The same source builds twice (see ``cuda/shim.cuh``): for the host with g++ (OpenMP when the
compiler has it) into the per-user cache of :mod:`gpucops._hostbuild`, called through ctypes —
the CPU fallback, and what CI runs — and for CUDA devices through CuPy's ``RawModule`` (NVRTC),
compiled once per process and device, sharing memory with torch through DLPack on torch's
current stream. ``GPUCOPS_HOST_SANITIZE=address`` builds the host library with AddressSanitizer
(load it in a process started with libasan preloaded).

Each launcher takes and returns torch tensors and matches the torch step of
:mod:`gpucops.parallel` bit for bit.
"""

from __future__ import annotations

import ctypes
import functools
import os
from importlib import resources
from pathlib import Path

import torch

from ._hostbuild import DEFAULT_FLAGS, build_library

__all__ = ["ContractionKernels", "cuda_sources", "kernels_for"]

_LOW32 = 0xFFFFFFFF
_THREADS = 256
_i64, _f64, _ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p
# argument types of each kernel, in order: "i" long long, "d" double, "p" pointer
_SIGNATURES = {
    "score_pick": "iippppppp",
    "star_propose": "ippppidppp",
    "star_pair": "ipppp",
    "bucket_count": "ipp",
    "bucket_fill": "ipppp",
    "bucket_sort": "ippp",
    "bucket_sum_rows": "iipppp",
    "edge_remap": "ipppp",
    "edge_runs": "ippppppp",
    "edge_gather": "ippppppp",
}


def cuda_sources() -> Path:
    """The folder holding the shipped ``.cu``/``.cuh`` sources."""
    return Path(str(resources.files("gpucops.cuda")))


def _host_flags() -> tuple[str, ...]:
    flags = (*DEFAULT_FLAGS, "-fopenmp", "-x", "c++", "-I", str(cuda_sources()))
    if os.environ.get("GPUCOPS_HOST_SANITIZE") == "address":
        flags = (*flags, "-fsanitize=address", "-fno-omit-frame-pointer", "-g", "-O1")
    return flags


@functools.cache
def _host_library(flags: tuple[str, ...]) -> ctypes.CDLL:
    folder = cuda_sources()
    library = ctypes.CDLL(
        str(build_library(folder / "contraction.cu", flags, (folder / "shim.cuh",)))
    )
    for name, signature in _SIGNATURES.items():
        function = getattr(library, name)
        function.restype = None
        function.argtypes = [{"i": _i64, "d": _f64, "p": _ptr}[code] for code in signature]
    return library


@functools.cache
def _cuda_module(device_index: int):  # pragma: no cover - needs a GPU
    import cupy

    folder = cuda_sources()
    with cupy.cuda.Device(device_index):
        return cupy.RawModule(
            code=(folder / "contraction.cu").read_text(), options=("-std=c++17", f"-I{folder}")
        )


class ContractionKernels:
    """The kernels of one device type, with torch tensors in and out."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cpu":
            self._library = _host_library(_host_flags())

    def _launch(self, name: str, count: int, *args: object) -> None:
        if count == 0:
            return
        if self.device.type == "cpu":
            values = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]
            getattr(self._library, name)(*values)
            return
        self._launch_cuda(name, count, args)  # pragma: no cover - needs a GPU

    def _launch_cuda(self, name: str, count: int, args: tuple) -> None:  # pragma: no cover
        import cupy
        import numpy

        converted = []
        for code, value in zip(_SIGNATURES[name], args, strict=True):
            if code == "p":
                converted.append(cupy.from_dlpack(value))
            else:
                converted.append(numpy.int64(value) if code == "i" else numpy.float64(value))
        stream = cupy.cuda.ExternalStream(torch.cuda.current_stream(self.device).cuda_stream)
        function = _cuda_module(self.device.index or 0).get_function(name)
        with stream:
            function(((count + _THREADS - 1) // _THREADS,), (_THREADS,), tuple(converted))

    def score_pick(
        self,
        costs: torch.Tensor,
        minimum: torch.Tensor,
        argmin: torch.Tensor,
        edges: torch.Tensor,
        weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Scores ``[E]`` float64 and picks ``[C]`` int64 (−1: none), as
        :func:`gpucops.parallel.score_edges` and :func:`gpucops.parallel.pick_edges`."""
        num_edges, (num_clusters, num_classes) = edges.shape[0], costs.shape
        scores = torch.empty(num_edges, dtype=torch.float64, device=self.device)
        best = torch.zeros(num_clusters, dtype=torch.int64, device=self.device)
        self._launch(
            "score_pick", num_edges, num_edges, num_classes, edges.contiguous(),
            weights.contiguous(), costs.contiguous(), minimum.contiguous(), argmin.contiguous(),
            scores, best,
        )  # fmt: skip
        return scores, torch.where(best > 0, _LOW32 - (best & _LOW32), -1)

    def star_roots(
        self,
        picks: torch.Tensor,
        edges: torch.Tensor,
        scores: torch.Tensor,
        local_index: torch.Tensor,
        round_index: int,
        epsilon: float | None,
    ) -> torch.Tensor:
        """Proposed roots ``[C]`` int64, as :func:`gpucops.parallel.star_roots` with the coin of
        :func:`gpucops.parallel.coin_is_centre`."""
        count = picks.shape[0]
        target = torch.empty(count, dtype=torch.int64, device=self.device)
        root = torch.arange(count, device=self.device)
        involved = torch.zeros(count, dtype=torch.int32, device=self.device)
        gate = -1.0 if epsilon is None else 1.0 - epsilon
        picks, edges = picks.contiguous(), edges.contiguous()
        self._launch(
            "star_propose", count, count, picks, edges, scores.contiguous(),
            local_index.contiguous(), round_index, gate, target, root, involved,
        )  # fmt: skip
        self._launch("star_pair", count, count, picks, target, involved, root)
        return root

    def _buckets(
        self, keys: torch.Tensor, num_buckets: int, secondary: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Counting sort of the items with ``keys ≥ 0`` into ``num_buckets`` buckets, each sorted
        by (secondary, item). Returns ``start [num_buckets + 1]`` and ``slot [M]`` item ids."""
        counts = torch.zeros(num_buckets, dtype=torch.int64, device=self.device)
        self._launch("bucket_count", keys.shape[0], keys.shape[0], keys, counts)
        start = torch.zeros(num_buckets + 1, dtype=torch.int64, device=self.device)
        torch.cumsum(counts, 0, out=start[1:])
        slot = torch.empty(int(start[-1]), dtype=torch.int64, device=self.device)
        fill = torch.zeros(num_buckets, dtype=torch.int64, device=self.device)
        self._launch("bucket_fill", keys.shape[0], keys.shape[0], keys, start, fill, slot)
        self._launch("bucket_sort", num_buckets, num_buckets, start, secondary, slot)
        return start, slot

    def segment_sum(
        self, rows: torch.Tensor, segment_ids: torch.Tensor, num_segments: int
    ) -> torch.Tensor:
        """``[num_segments, K]`` float64 sums of ``rows [M, K]`` float64 by ``segment_ids`` (each
        in [0, num_segments)), added in item order, as :func:`gpucops.segment.segment_sum`."""
        rows, segment_ids = rows.contiguous(), segment_ids.contiguous()
        start, slot = self._buckets(segment_ids, num_segments, segment_ids)
        out = torch.empty((num_segments, rows.shape[1]), dtype=torch.float64, device=self.device)
        self._launch(
            "bucket_sum_rows", num_segments, num_segments, rows.shape[1], start, slot, rows, out
        )
        return out

    def coalesce(
        self, edges: torch.Tensor, weights: torch.Tensor, mapping: torch.Tensor, num_clusters: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Edges ``[E, 2]`` mapped to clusters by ``mapping``, without self-loops, parallel edges
        summed (float64, in edge order), sorted by (low, high) — as
        ``gpucops.parallel._coalesce(mapping[edges], weights, num_clusters)``."""
        num_edges = edges.shape[0]
        low = torch.empty(num_edges, dtype=torch.int64, device=self.device)
        high = torch.empty(num_edges, dtype=torch.int64, device=self.device)
        self._launch("edge_remap", num_edges, num_edges, edges.contiguous(), mapping, low, high)
        start, slot = self._buckets(low, num_clusters, high)
        run_high = torch.empty_like(slot)
        run_weight = torch.empty(slot.shape[0], dtype=torch.float64, device=self.device)
        unique = torch.empty(num_clusters, dtype=torch.int64, device=self.device)
        self._launch(
            "edge_runs", num_clusters, num_clusters, start, slot, high, weights.contiguous(),
            run_high, run_weight, unique,
        )  # fmt: skip
        end = torch.cumsum(unique, 0)
        total = int(end[-1]) if num_clusters else 0
        merged = torch.empty((total, 2), dtype=torch.int64, device=self.device)
        merged_weights = torch.empty(total, dtype=torch.float64, device=self.device)
        self._launch(
            "edge_gather", num_clusters, num_clusters, start, unique, end - unique, run_high,
            run_weight, merged, merged_weights,
        )  # fmt: skip
        return merged, merged_weights


def kernels_for(device: torch.device) -> ContractionKernels | None:
    """The kernels for ``device``, or None where they cannot run (CUDA without CuPy)."""
    if device.type == "cuda":
        try:
            import cupy  # noqa: F401
        except ImportError:
            return None
    return ContractionKernels(device)
