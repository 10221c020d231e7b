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
import math
import os
import threading
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ._hostbuild import DEFAULT_FLAGS, build_library

if TYPE_CHECKING:
    from .blocks import NodeBlocks

__all__ = ["ContractionKernels", "cuda_sources", "kernels_for"]

_LOW32 = 0xFFFFFFFF
_THREADS = 256
_i64, _f64, _ptr = ctypes.c_int64, ctypes.c_double, ctypes.c_void_p
# argument types of each kernel, in order: "i" long long, "d" double, "p" pointer
_SIGNATURES = {
    "row_min": "iippp",
    "score_pick": "iippppppp",
    "pick": "ippp",
    "star_propose": "ippppidpppp",
    "star_pair": "ipppp",
    "star_free": "ippppdp",
    "bucket_count": "ipp",
    "bucket_fill": "ippppp",
    "bucket_fill_payload": "ippppppp",
    "bucket_sort": "ipp",
    "bucket_sort_payload": "ippp",
    "bucket_sum_rows": "iipppp",
    "edge_remap": "ipppp",
    "edge_runs": "ippp",
    "edge_write": "ipppppp",
    "star_mark": "ipp",
    "star_keys": "ippp",
    "internal_keys": "ippp",
    "star_cost": "iipppppppp",
    "edge_cut": "ippp",
    "block_greedy": "iiiiippppppppppppp",
}
# threads per CUDA block where not _THREADS: one block greedy per thread is heavy, so more CUDA
# blocks (multiprocessors) share the few thousand of them
_THREADS_OF = {"block_greedy": 32}


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
        self._scratch: dict[tuple[str, torch.dtype], torch.Tensor] = {}
        if device.type == "cpu":
            self._library = _host_library(_host_flags())

    def kept(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """An uninitialised ``shape`` buffer kept under ``name`` for later solves (see
        :meth:`_temporary`)."""
        return self._temporary(name, math.prod(shape), dtype).view(shape)

    def release_scratch(self) -> None:
        """Free the kept scratch buffers (they are allocated again when next needed)."""
        self._scratch.clear()

    def _temporary(self, name: str, numel: int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
        """Uninitialised ``[numel]`` storage kept across calls under ``name`` (grown as needed),
        for a temporary that dies before the next use of its name. The host allocator hands
        large blocks back to the OS, and faulting fresh pages in every round cost more than some
        kernels (measured on 1024×2048 grids)."""
        buffer = self._scratch.get((name, dtype))
        if buffer is None or buffer.numel() < numel:
            buffer = torch.empty(numel, dtype=dtype, device=self.device)
            self._scratch[(name, dtype)] = buffer
        return buffer[:numel]

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
        threads = _THREADS_OF.get(name, _THREADS)
        with stream:
            function(((count + threads - 1) // threads,), (threads,), tuple(converted))

    def row_min(self, costs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """min ``[C]`` float64 and argmin ``[C]`` int64 (lowest class on ties) of each row of
        ``costs [C, K]``, as :func:`gpucops.parallel.cluster_classes`."""
        (count, width), costs = costs.shape, costs.contiguous()
        minimum = torch.empty(count, dtype=torch.float64, device=self.device)
        argmin = torch.empty(count, dtype=torch.int64, device=self.device)
        self._launch("row_min", count, count, width, costs, minimum, argmin)
        return minimum, argmin

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
        # the scores live until the round's stars are checked, before the next score_pick
        scores = self._temporary("scores", num_edges, torch.float64)
        best = self._temporary("best", num_clusters).zero_()
        self._launch(
            "score_pick", num_edges, num_edges, num_classes, edges.contiguous(),
            weights.contiguous(), costs.contiguous(), minimum.contiguous(), argmin.contiguous(),
            scores, best,
        )  # fmt: skip
        return scores, torch.where(best > 0, _LOW32 - (best & _LOW32), -1)

    def pick(self, scores: torch.Tensor, edges: torch.Tensor, num_clusters: int) -> torch.Tensor:
        """Picks ``[C]`` int64 (−1: none) from given ``scores``, as
        :func:`gpucops.parallel.pick_edges`."""
        best = self._temporary("best", num_clusters).zero_()
        self._launch(
            "pick", scores.shape[0], scores.shape[0], edges.contiguous(), scores.contiguous(), best
        )
        return torch.where(best > 0, _LOW32 - (best & _LOW32), -1)

    def star_roots(
        self,
        picks: torch.Tensor,
        edges: torch.Tensor,
        scores: torch.Tensor,
        local_index: torch.Tensor,
        round_index: int,
        epsilon: float | None,
        free_leaves: bool = False,
    ) -> torch.Tensor:
        """Proposed roots ``[C]`` int64, as :func:`gpucops.parallel.star_roots` with the coin of
        :func:`gpucops.parallel.coin_is_centre`."""
        count = picks.shape[0]
        target = torch.empty(count, dtype=torch.int64, device=self.device)
        root = torch.arange(count, device=self.device)
        flags = torch.zeros(2, count, dtype=torch.int32, device=self.device)
        involved, picked = flags[0], flags[1]
        gate = -1.0 if epsilon is None else 1.0 - epsilon
        picks, edges, scores = picks.contiguous(), edges.contiguous(), scores.contiguous()
        self._launch(
            "star_propose", count, count, picks, edges, scores, local_index.contiguous(),
            round_index, gate, target, root, involved, picked,
        )  # fmt: skip
        self._launch("star_pair", count, count, picks, target, involved, root)
        if free_leaves:
            self._launch("star_free", count, count, picks, target, picked, scores, gate, root)
        return root

    def _buckets(
        self,
        keys: torch.Tensor,
        num_buckets: int,
        secondary: torch.Tensor,
        name: str = "bucket",
        payload: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Counting sort of the items with ``keys ≥ 0`` into ``num_buckets`` buckets, each sorted
        by (secondary, item). Returns ``start [num_buckets + 1]``, ``slot [M]`` packed keys
        ``secondary << 32 | item`` and, when a float64 ``payload`` per item is given, the
        payloads in slot order (read in item order while filling, so no random gather later) —
        kept buffers under ``name`` (a second sort alive at the same time needs another
        name)."""
        if keys.shape[0] > _LOW32 or num_buckets >= 1 << 31:
            raise ValueError(
                f"the contraction kernels take at most 2^32 items and 2^31 buckets, got "
                f"{keys.shape[0]} items and {num_buckets} buckets"
            )
        counts = self._temporary(f"{name} counts", num_buckets).zero_()
        self._launch("bucket_count", keys.shape[0], keys.shape[0], keys, counts)
        start = self._temporary(f"{name} start", num_buckets + 1)
        start[0] = 0
        torch.cumsum(counts, 0, out=start[1:])
        slot = self._temporary(f"{name} slot", int(start[-1]))
        fill = counts.zero_()
        n = keys.shape[0]
        if payload is None:
            self._launch("bucket_fill", n, n, keys, secondary, start, fill, slot)
            self._launch("bucket_sort", num_buckets, num_buckets, start, slot)
            return start, slot, None
        slot_payload = self._temporary(f"{name} payload", slot.shape[0], torch.float64)
        self._launch(
            "bucket_fill_payload", n, n, keys, secondary, payload, start, fill, slot, slot_payload
        )
        self._launch("bucket_sort_payload", num_buckets, num_buckets, start, slot, slot_payload)
        return start, slot, slot_payload

    def _output(self, name: str | None, numel: int, dtype: torch.dtype) -> torch.Tensor:
        if name is None:
            return torch.empty(numel, dtype=dtype, device=self.device)
        return self._temporary(name, numel, dtype)

    def segment_sum(
        self,
        rows: torch.Tensor,
        segment_ids: torch.Tensor,
        num_segments: int,
        out: str | None = None,
    ) -> torch.Tensor:
        """``[num_segments, K]`` float64 sums of ``rows [M, K]`` float64 by ``segment_ids`` (< 0:
        skipped), added in item order, as :func:`gpucops.segment.segment_sum`. ``out`` names a
        kept buffer to write into (see :meth:`_temporary`); None = a new tensor."""
        rows, segment_ids = rows.contiguous(), segment_ids.contiguous()
        start, slot, _ = self._buckets(segment_ids, num_segments, segment_ids)
        width = rows.shape[1]
        out = self._output(out, num_segments * width, torch.float64).view(num_segments, width)
        self._launch(
            "bucket_sum_rows", num_segments, num_segments, rows.shape[1], start, slot, rows, out
        )
        return out

    def coalesce(
        self,
        edges: torch.Tensor,
        weights: torch.Tensor,
        mapping: torch.Tensor,
        num_clusters: int,
        out: str | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Edges ``[E, 2]`` mapped to clusters by ``mapping``, without self-loops, parallel edges
        summed (float64, in edge order), sorted by (low, high) — as
        ``gpucops.parallel._coalesce(mapping[edges], weights, num_clusters)``. ``out`` names kept
        buffers to write into (see :meth:`_temporary`); None = new tensors."""
        num_edges = edges.shape[0]
        low, high = self._temporary("low", num_edges), self._temporary("high", num_edges)
        self._launch("edge_remap", num_edges, num_edges, edges.contiguous(), mapping, low, high)
        start, slot, slot_weights = self._buckets(
            low, num_clusters, high, payload=weights.contiguous()
        )
        unique = self._temporary("unique", num_clusters)
        self._launch("edge_runs", num_clusters, num_clusters, start, slot, unique)
        end = torch.cumsum(unique, 0)
        total = int(end[-1]) if num_clusters else 0
        merged = self._output(out and out + ".edges", 2 * total, torch.int64).view(total, 2)
        merged_weights = self._output(out and out + ".weights", total, torch.float64)
        self._launch(
            "edge_write", num_clusters, num_clusters, start, slot, slot_weights,
            end - unique, merged, merged_weights,
        )  # fmt: skip
        return merged, merged_weights

    def block_greedy(
        self, costs: torch.Tensor, weights: torch.Tensor, blocks: NodeBlocks, num_images: int
    ) -> torch.Tensor:
        """``[N]`` int64: the lowest node id of each node's cluster after the sequential greedy
        inside every block, as :func:`gpucops.blocks.block_roots`."""
        (num_nodes, width), device = costs.shape, self.device
        block_nodes = num_images * blocks.block_nodes.shape[0]
        block_edges = num_images * blocks.block_edges.shape[0]
        root = torch.arange(num_nodes, device=device)  # nodes outside every block stay alone
        count = num_images * blocks.num_blocks
        self._launch(
            "block_greedy", count, count, blocks.num_blocks, blocks.nodes_per_image,
            blocks.edges_per_image, width, blocks.node_start, blocks.block_nodes,
            blocks.edge_start, blocks.block_edges, blocks.edge_ends.contiguous(),
            costs.contiguous(), weights.contiguous(),
            self._temporary("block costs", block_nodes * width, torch.float64),
            self._temporary("block minima", block_nodes, torch.float64),
            self._temporary("block node lists", 5 * block_nodes, torch.int32),
            self._temporary("block edge scores", 2 * block_edges, torch.float64),
            self._temporary("block edge lists", 6 * block_edges, torch.int32),
            root,
        )  # fmt: skip
        return root

    def edge_cut(self, edges: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """``[E]`` bool: True where the end-points of an edge carry different ``labels [N]``
        int64 — in a kept buffer, valid until the next call."""
        num_edges = edges.shape[0]
        cut = self._temporary("cut", num_edges, torch.bool)
        self._launch("edge_cut", num_edges, num_edges, edges.contiguous(), labels.contiguous(), cut)
        return cut

    def star_costs(
        self,
        root: torch.Tensor,
        costs: torch.Tensor,
        minimum: torch.Tensor,
        edges: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        """``[C]`` float64 merge cost of the star rooted at each cluster (0 where none), each sum
        in cluster or edge order, as the torch branch of :func:`gpucops.parallel.checked_roots`."""
        (num_clusters, width), num_edges = costs.shape, edges.shape[0]
        root, edges = root.contiguous(), edges.contiguous()
        in_star = torch.zeros(num_clusters, dtype=torch.int32, device=self.device)
        self._launch("star_mark", num_clusters, num_clusters, root, in_star)
        key = self._temporary("star key", num_clusters)
        self._launch("star_keys", num_clusters, num_clusters, root, in_star, key)
        start, slot, _ = self._buckets(key, num_clusters, key, "star")
        internal = self._temporary("low", num_edges)
        self._launch("internal_keys", num_edges, num_edges, edges, root, internal)
        internal_start, internal_slot, _ = self._buckets(
            internal, num_clusters, internal, "internal"
        )
        merge_cost = torch.empty(num_clusters, dtype=torch.float64, device=self.device)
        self._launch(
            "star_cost", num_clusters, num_clusters, width, start, slot, costs.contiguous(),
            minimum.contiguous(), internal_start, internal_slot, weights.contiguous(), merge_cost,
        )  # fmt: skip
        return merge_cost


_PER_THREAD = threading.local()


def kernels_for(device: torch.device) -> ContractionKernels | None:
    """The kernels for ``device``, or None where they cannot run (CUDA without CuPy).

    One instance per thread and device, so its scratch buffers serve every later solve: on the
    CPU, faulting fresh pages in for them cost about 1 s of an 8 s solve of a 1024×2048 grid.
    The buffers stay allocated (the size of the largest problem solved so far) until
    :meth:`ContractionKernels.release_scratch`; one per thread, so threads never share them.
    """
    if device.type == "cuda":
        try:
            import cupy  # noqa: F401
        except ImportError:
            return None
    instances = _PER_THREAD.__dict__.setdefault("kernels", {})
    key = (device.type, device.index)
    if key not in instances:
        instances[key] = ContractionKernels(device)
    return instances[key]
