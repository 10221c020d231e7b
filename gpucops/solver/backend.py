"""The steps of the parallel contraction as the kernels of ``cuda/contraction.cu``: the host build
and CUDA.

:class:`KernelSteps` implements :class:`gpucops.solver.steps.Steps` with the same method names
as the torch reference :class:`~gpucops.solver.steps.TorchSteps`, and matches it bit for bit;
:func:`steps_for` chooses the implementation for a device. The same source builds twice (see
``cuda/shim.cuh``): for the host with g++ (OpenMP when the compiler has it) into the per-user
cache of :mod:`gpucops.solver.hostbuild`, called through ctypes —
the CPU fallback, and what CI runs — and for CUDA devices through CuPy's ``RawModule`` (NVRTC),
compiled once per process and device, launched on torch's current stream with the tensors' raw
pointers (no copies, no per-tensor export). ``GPUCOPS_HOST_SANITIZE=address`` builds the host
library with AddressSanitizer (load it in a process started with libasan preloaded);
:func:`host_library` builds other variants (the tests' order-perturbation, ThreadSanitizer and
flush-to-zero builds).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import math
import os
import struct
import threading
from importlib import resources
from pathlib import Path

import torch

from .hostbuild import DEFAULT_FLAGS, build_library
from .steps import LOW32, Steps, TorchSteps, top_fraction_cuts

__all__ = ["KernelSteps", "cuda_sources", "host_library", "steps_for"]

_THREADS = 256
_i64, _ptr = ctypes.c_int64, ctypes.c_void_p
# argument types of each kernel, in order: "i" long long, "p" pointer
_SIGNATURES = {
    "row_min": "iippp",
    "score_pick": "iiiippppppp",
    "top_cut": "iiippp",
    "pick_band": "ippppp",
    "star_propose": "ipppipppp",
    "star_pair": "ipppp",
    "star_free": "ippp",
    "root_marks": "ipppp",
    "root_map": "ippppp",
    "bucket_count": "ipp",
    "bucket_fill": "ippppp",
    "bucket_fill_payload": "ippppppp",
    "bucket_sort": "ipp",
    "bucket_sort_runs": "ipppp",
    "bucket_sum_rows": "iipppp",
    "star_sum_rows": "iiipppppppp",
    "edge_remap": "ipppp",
    "edge_write": "iiippppppp",
    "unpack_picks": "ipp",
    "star_shrink_bid": "ippppp",
    "star_shrink": "ipppppp",
    "star_cost": "iiipppppppp",
    "edge_cut": "ippp",
    "tile_greedy": "iiiiippppppppppppp",
    "tile_greedy_warp": "iiiiipppppppppppppp",
    "bucket_sort_warp": "ipp",
    "bucket_sort_runs_warp": "ipppp",
}
# words of zeroed scratch per cluster a pass takes (KernelSteps.begin_pass): two pick-key arrays
# (C + 1 words each), the star flags (2C int32), the shrink keys (C), three counting sorts'
# counts and offsets (2C + 1 each) and the warps' run counts of the contraction (C) — 11C + 5 —
# and 64 words for the small ones (one image's first
# edge, the contraction's clusters per image: a batch of more than ~58 images zeroes those by a
# launch of their own)
_ZEROED_PER_CLUSTER = 11
# threads per CUDA thread block where not _THREADS: one tile greedy per thread is heavy, so more
# thread blocks (multiprocessors) share the few thousand of them; a warp per item likewise
_THREADS_OF = {
    "tile_greedy": 32,
    "tile_greedy_warp": 128,
    "bucket_sort_warp": 128,
    "bucket_sort_runs_warp": 128,
}
# lanes of a warp (the kernels with a warp per item)
_WARP = 32


def cuda_sources() -> Path:
    """The folder holding the shipped ``.cu``/``.cuh`` sources."""
    return Path(str(resources.files("gpucops.cuda")))


def _host_flags(folder: Path) -> tuple[str, ...]:
    flags = (*DEFAULT_FLAGS, "-fopenmp", "-x", "c++", "-I", str(folder))
    if os.environ.get("GPUCOPS_HOST_SANITIZE") == "address":
        flags = (*flags, "-fsanitize=address", "-fno-omit-frame-pointer", "-g", "-O1")
    return flags


@functools.cache
def host_library(extra_flags: tuple[str, ...] = (), folder: Path | None = None) -> ctypes.CDLL:
    """The host build of ``folder/contraction.cu`` (default: the shipped sources) with the package's
    flags and ``extra_flags`` after them, loaded with every kernel's argument types."""
    folder = cuda_sources() if folder is None else folder
    headers = tuple(sorted(folder.glob("*.cuh")))
    flags = (*_host_flags(folder), *extra_flags)
    path = build_library(folder / "contraction.cu", flags, headers, _SIGNATURES)
    library = ctypes.CDLL(str(path))
    for name, signature in _SIGNATURES.items():
        function = getattr(library, name)
        function.restype = None
        function.argtypes = [{"i": _i64, "p": _ptr}[code] for code in signature]
    return library


def cuda_program(folder: Path | None = None) -> tuple[str, tuple[str, ...]]:
    """The source and NVRTC options of the CUDA module.

    CuPy keys its kernel cache by the source string and the options alone
    (``_compile_with_cache_cuda`` in ``cupy/cuda/compiler.py``), not by the headers the source
    includes, so the options carry a digest of every header: an edited ``shim.cuh`` compiles anew
    instead of loading the stale binary of the old one.
    """
    folder = cuda_sources() if folder is None else folder
    headers = hashlib.sha256()
    for header in sorted(folder.glob("*.cuh")):
        headers.update(header.name.encode() + b"\0" + header.read_bytes() + b"\0")
    options = ("-std=c++17", f"-I{folder}", f"-DGPUCOPS_HEADERS={headers.hexdigest()[:16]}")
    return (folder / "contraction.cu").read_text(), options


@functools.cache
def _cuda_module(device_index: int):  # pragma: no cover - needs a GPU
    import cupy

    code, options = cuda_program()
    with cupy.cuda.Device(device_index):
        return cupy.RawModule(code=code, options=options)


@functools.cache
def _cuda_function(device_index: int, name: str):
    """The kernel ``name`` of the module on a device, looked up once."""
    return _cuda_module(device_index).get_function(name)


def _resolved(device: torch.device) -> torch.device:
    """``device`` with its index: a bare ``cuda`` means the current CUDA device, not device 0."""
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


class KernelSteps(Steps):
    """The steps as kernels on one device, with torch tensors in and out (signatures and types as
    in :class:`~gpucops.solver.steps.Steps`). Kept buffers (see :meth:`kept`) serve later solves;
    one instance per thread and device (:func:`steps_for`). ``library``: the host build to call
    on the CPU (default: :func:`host_library`). ``warps``: whether the steps with a long
    dependent chain per item — a pre-pass tile's greedy, a bucket's sort — run a warp per item
    (kernels ``tile_greedy_warp``, ``bucket_sort_warp``, ``bucket_sort_runs_warp``: a GPU's) or a
    thread (``tile_greedy``, ``bucket_sort``, ``bucket_sort_runs``: the host's, less work in all);
    the same results either way. None = warps where the kernels launch on CUDA."""

    def __init__(
        self, device: torch.device, library: ctypes.CDLL | None = None, *, warps: bool | None = None
    ):
        self.device = _resolved(device)
        self._warps = warps
        self._scratch: dict[tuple[str, torch.dtype], torch.Tensor] = {}
        # CUDA launches go through CuPy (the tests switch this on for CPU tensors, with a stand-in
        # for CuPy that calls the host build, to run the CUDA launch path without a GPU)
        self._cuda_launches = self.device.type == "cuda"
        self._stream = None  # the CUDA stream that last used the kept buffers
        # the pass's zeroed scratch (begin_pass): words [used, end) are still zero; two kept
        # buffers in turn, so what a pass hands out lives through the next one
        self._zeroed: torch.Tensor | None = None
        self._zeroed_used = 0
        self._zeroed_turn = 0
        # the star check's roots and buckets of this pass: (checked, proposed, start, slot)
        self._stars: tuple[torch.Tensor, ...] | None = None
        if self.device.type == "cpu":
            self._library = host_library() if library is None else library

    def kept(
        self, name: str, shape: tuple[int, ...], dtype: torch.dtype = torch.float64
    ) -> torch.Tensor:
        """An uninitialised ``shape`` buffer kept under ``name`` for later solves (see
        :meth:`_temporary`)."""
        return self._temporary(name, math.prod(shape), dtype).view(shape)

    def release_scratch(self) -> None:
        """Free the kept scratch buffers (they are allocated again when next needed)."""
        self._scratch.clear()
        self._zeroed, self._zeroed_used, self._stars = None, 0, None

    def begin_pass(self, num_clusters):
        # one launch zeroes what the pass's steps need zeroed (pick keys, star flags, bucket
        # counts, the contraction's clusters per image, …), each of which was a launch of its
        # own; the other buffer keeps what the last pass handed out (the clusters per image of
        # the graph this pass works on)
        words = _ZEROED_PER_CLUSTER * num_clusters + 64
        self._zeroed_turn = 1 - self._zeroed_turn
        self._zeroed = self._temporary(f"zeroed {self._zeroed_turn}", words).zero_()
        self._zeroed_used = 0
        self._stars = None  # the last pass's star buckets: dead

    def _identity(self, count: int) -> torch.Tensor:
        """0, 1, …, ``count`` − 1 from a kept buffer, filled when it grows (not a launch a
        pass); never written."""
        if self._cuda_launches:
            self._follow_stream()
        key = ("identity", torch.int64)
        identity = self._scratch.get(key)
        if identity is None or identity.numel() < count:
            self._scratch[key] = identity = torch.arange(count, device=self.device)
        return identity[:count]

    def _zeros(self, name: str, numel: int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
        """``[numel]`` zeros that live through the next pass at most: a slice of the pass's
        zeroed scratch (:meth:`begin_pass`) while it lasts — handed out once, so still zero —
        else the kept buffer ``name`` zeroed by a launch of its own."""
        if self._cuda_launches:
            self._follow_stream()
        words = -(-numel * dtype.itemsize // 8)
        zeroed, used = self._zeroed, self._zeroed_used
        if zeroed is not None and used + words <= zeroed.numel():
            self._zeroed_used = used + words
            return zeroed[used : used + words].view(dtype)[:numel]
        return self._temporary(name, numel, dtype).zero_()

    def _temporary(self, name: str, numel: int, dtype: torch.dtype = torch.int64) -> torch.Tensor:
        """Uninitialised ``[numel]`` storage kept across calls under ``name`` (grown as needed),
        for a temporary that dies before the next use of its name. The host allocator hands
        large blocks back to the OS, and faulting fresh pages in every round cost more than some
        kernels at full resolution."""
        if self._cuda_launches:
            self._follow_stream()
        buffer = self._scratch.get((name, dtype))
        if buffer is None or buffer.numel() < numel:
            buffer = torch.empty(numel, dtype=dtype, device=self.device)
            self._scratch[(name, dtype)] = buffer
        return buffer[:numel]

    def _follow_stream(self) -> None:
        """Hand the kept buffers to the current CUDA stream before they are used on it.

        A solve on another stream than the last one must not touch them before the last stream's
        work on them is done (``wait_stream``); and the caching allocator reuses a freed block as
        soon as the stream it was allocated on is done, so each buffer also records every stream
        that uses it (``Tensor.record_stream``, PyTorch's CUDA semantics notes) — else a buffer
        grown or released while another stream still reads it could be handed out again.
        """
        stream = torch.cuda.current_stream(self.device)
        if stream == self._stream:
            return
        if self._stream is not None:
            stream.wait_stream(self._stream)
        for buffer in self._scratch.values():
            buffer.record_stream(stream)
        self._stream = stream

    def _use_warps(self) -> bool:
        """Whether the warp-per-item kernels run (see the class docstring)."""
        return self._cuda_launches if self._warps is None else self._warps

    def _launch(self, name: str, count: int, *args: object) -> None:
        if count == 0:
            return
        if not self._cuda_launches:
            values = [a.data_ptr() if isinstance(a, torch.Tensor) else a for a in args]
            getattr(self._library, name)(*values)
            return
        self._launch_cuda(name, count, args)

    def _launch_cuda(self, name: str, count: int, args: tuple) -> None:
        import cupy
        import numpy

        index = self.device.index
        stream = torch.cuda.current_stream(self.device)
        threads = _THREADS_OF.get(name, _THREADS)
        # Raw pointers, passed by value as 8-byte integers (a pointer parameter's size and
        # alignment), not DLPack exports: an export cost ~9 µs of host work per tensor (0.6 µs
        # this way, benchmarks/RESULTS.md), took an event and a wait whenever CuPy's stream was
        # not torch's, and refused tensors that require grad (the kernels never need the graph).
        # The launch goes on torch's current stream, where every tensor's last writer ran.
        values = []
        for code, value in zip(_SIGNATURES[name], args, strict=True):
            if code == "i":
                values.append(numpy.int64(value))
            elif value.device != self.device:  # a pointer of another device would fault
                raise ValueError(
                    f"kernel {name} runs on {self.device}, got a tensor on {value.device}"
                )
            else:
                values.append(numpy.uint64(value.data_ptr()))
        cuda = cupy.cuda
        with cuda.Device(index), cuda.ExternalStream(stream.cuda_stream, index):
            _cuda_function(index, name)(((count + threads - 1) // threads,), (threads,), values)

    def input_costs(self, node_costs, label_mask, image):
        # into a kept buffer: fresh pages for hundreds of MB cost more than the copy itself at
        # full resolution
        # (detached: a copy that requires grad would keep the caller's graph alive in a kept
        # buffer)
        costs = self.kept("input costs", tuple(node_costs.shape)).copy_(node_costs.detach())
        if label_mask is not None:
            costs.masked_fill_(label_mask[image], float("inf"))
        return costs

    def input_weights(self, edge_costs):
        return self.kept("input weights", tuple(edge_costs.shape)).copy_(edge_costs.detach())

    def cluster_classes(self, costs):
        (count, width), costs = costs.shape, costs.contiguous()
        minimum = torch.empty(count, dtype=torch.float64, device=self.device)
        argmin = torch.empty(count, dtype=torch.int64, device=self.device)
        self._launch("row_min", count, count, width, costs, minimum, argmin)
        return minimum, argmin

    def score_pick(self, costs, minimum, argmin, edges, weights, pick=True):
        num_edges, (num_clusters, num_classes) = edges.shape[0], costs.shape
        # the scores live until the round's stars are checked, before the next score_pick
        scores = self._temporary("scores", num_edges, torch.float64)
        best = self._zeros("best", num_clusters + 1)  # the last word: the any-positive flag
        self._launch(
            "score_pick", num_edges, num_edges, num_classes, num_clusters, int(pick),
            edges.contiguous(), weights.contiguous(), costs.contiguous(), minimum.contiguous(),
            argmin.contiguous(), scores, best,
        )  # fmt: skip
        picks = self._unpack_picks(best[:num_clusters]) if pick else None
        return scores, picks, best[num_clusters:]

    def top_fraction_pick(self, scores, edges, image, num_images, fraction):
        num_edges, edges, scores = scores.shape[0], edges.contiguous(), scores.contiguous()
        cut = self._top_fraction_cuts(scores, edges, image, num_images, fraction)
        best = self._zeros("best", image.shape[0])
        image = image.contiguous()
        self._launch("pick_band", num_edges, num_edges, edges, scores, image, cut, best)
        return self._unpack_picks(best)

    def _top_fraction_cuts(self, scores, edges, image, num_images, fraction):
        """:func:`~gpucops.solver.steps.top_fraction_cuts`: on the host torch's (one image: a
        ``kthvalue``, linear where a sort is not); on a GPU the scores sorted largest first per
        image, and a kernel that finds each image's positive prefix and cut — ~6 launches for
        one image instead of torch's ~30."""
        if not self._cuda_launches:
            return top_fraction_cuts(scores, image[edges[:, 0]], num_images, fraction)
        num_edges, device = scores.shape[0], self.device
        cut = torch.empty(num_images, dtype=torch.float64, device=device)
        if num_edges == 0:
            return cut.fill_(float("-inf"))
        if num_images == 1:
            ranked = torch.sort(scores, descending=True).values
            first = self._zeros("first edge", 1)  # the image's edges start at 0
        else:  # each image's scores together (edges are grouped by image), largest first
            edge_image = image[edges[:, 0]]
            order = torch.argsort(scores, descending=True, stable=True)
            ranked = scores[order[torch.argsort(edge_image[order], stable=True)]]
            first = torch.searchsorted(edge_image, torch.arange(num_images, device=device))
        bits = struct.unpack("<q", struct.pack("<d", fraction))[0]
        self._launch("top_cut", num_images, num_images, num_edges, bits, ranked, first, cut)
        return cut

    def _unpack_picks(self, best: torch.Tensor) -> torch.Tensor:
        """:func:`~gpucops.solver.steps.unpack_picks` as one kernel."""
        picks = torch.empty_like(best)
        self._launch("unpack_picks", best.shape[0], best.shape[0], best, picks)
        return picks

    def star_roots(self, picks, edges, local_index, round_index):
        count = picks.shape[0]
        local_index = self._identity(count) if local_index is None else local_index.contiguous()
        target = torch.empty(count, dtype=torch.int64, device=self.device)
        root = torch.empty(count, dtype=torch.int64, device=self.device)  # star_propose fills it
        flags = self._zeros("star flags", 2 * count, torch.int32).view(2, count)
        involved, picked = flags[0], flags[1]
        picks, edges = picks.contiguous(), edges.contiguous()
        self._launch(
            "star_propose", count, count, picks, edges, local_index, round_index,
            target, root, involved, picked,
        )  # fmt: skip
        self._launch("star_pair", count, count, picks, target, involved, root)
        self._launch("star_free", count, count, target, picked, root)
        return root

    def _buckets(
        self, keys: torch.Tensor, num_buckets: int, secondary: torch.Tensor, name: str = "bucket"
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Counting sort of the items with ``keys ≥ 0`` into ``num_buckets`` buckets, each sorted
        by (secondary, item). Returns ``start [num_buckets + 1]`` and ``slot [M]``, packed keys
        ``secondary << 32 | item`` — kept buffers under ``name`` (a second sort alive at the same
        time needs another name)."""
        counts, start, slot = self._bucket_offsets(keys, num_buckets, name)
        n = keys.shape[0]
        # the fill counts each bucket back down to zero (its cursor): no second zeroed array
        self._launch("bucket_fill", n, n, keys, secondary, start, counts, slot)
        if self._use_warps():
            self._launch("bucket_sort_warp", _WARP * num_buckets, num_buckets, start, slot)
        else:
            self._launch("bucket_sort", num_buckets, num_buckets, start, slot)
        return start, slot

    def _edge_buckets(
        self, low: torch.Tensor, num_buckets: int, high: torch.Tensor, weights: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`_buckets` of the edges by ``low`` end-point, sorted by (``high``, edge), with
        their ``weights`` in slot order (read in edge order while filling, so no random gather
        later) and each bucket's count of distinct ``high`` ends. Returns ``start``, ``slot``,
        the slot weights and ``unique [num_buckets]``."""
        counts, start, slot = self._bucket_offsets(low, num_buckets, "bucket")
        n = low.shape[0]
        slot_weights = self._temporary("bucket payload", n, torch.float64)
        self._launch(
            "bucket_fill_payload", n, n, low, high, weights, start, counts, slot, slot_weights
        )
        arguments = (num_buckets, start, slot, slot_weights)
        if self._use_warps():  # the lanes add their runs up
            unique = self._zeros("unique", num_buckets)
            self._launch("bucket_sort_runs_warp", _WARP * num_buckets, *arguments, unique)
        else:
            unique = self._temporary("unique", num_buckets)
            self._launch("bucket_sort_runs", num_buckets, *arguments, unique)
        return start, slot, slot_weights, unique

    def _bucket_offsets(
        self, keys: torch.Tensor, num_buckets: int, name: str
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The counts of a counting sort and their exclusive prefix sum ``start``, and room for
        its slots."""
        if keys.shape[0] > LOW32 or num_buckets >= 1 << 31:
            raise ValueError(
                f"the contraction kernels take at most 2^32 items and 2^31 buckets, got "
                f"{keys.shape[0]} items and {num_buckets} buckets"
            )
        # the counts and the prefix sum in one zeroed buffer: start[0] is 0 with no launch
        # (`start[0] = 0` would copy a host number and wait for it)
        counted = self._zeros(f"{name} counts", 2 * num_buckets + 1)
        counts, start = counted[:num_buckets], counted[num_buckets:]
        self._launch("bucket_count", keys.shape[0], keys.shape[0], keys, counts)
        torch.cumsum(counts, 0, out=start[1:])
        # sized by capacity (at most every item has a bucket), not by start[-1], whose read-back
        # would stop the host until the device caught up; consumers read slots by start only
        return counts, start, self._temporary(f"{name} slot", keys.shape[0])

    def _output(self, name: str, numel: int, dtype: torch.dtype) -> torch.Tensor:
        if not name:
            return torch.empty(numel, dtype=dtype, device=self.device)
        return self._temporary(name, numel, dtype)

    def contraction_map(self, root, image, num_images):
        count, root, image = root.shape[0], root.contiguous(), image.contiguous()
        is_root = torch.empty(count, dtype=torch.int64, device=self.device)
        per_image = self._zeros("per image", num_images)  # read in the next pass at most
        self._launch("root_marks", count, count, root, image, is_root, per_image)
        ordinal = torch.cumsum(is_root, 0)
        mapping = torch.empty(count, dtype=torch.int64, device=self.device)
        root_image = torch.empty(count, dtype=torch.int64, device=self.device)
        self._launch("root_map", count, count, root, ordinal, image, mapping, root_image)
        return mapping, ordinal[-1:], per_image, root_image

    def segment_sum(self, rows, segment_ids, num_segments, out=""):
        """As :meth:`Steps.segment_sum` (ids < 0 skipped); ``out`` names a kept buffer to write
        into (see :meth:`_temporary`), "" = a new tensor."""
        rows, segment_ids = rows.contiguous(), segment_ids.contiguous()
        start, slot = self._buckets(segment_ids, num_segments, segment_ids)
        width = rows.shape[1]
        out = self._output(out, num_segments * width, torch.float64).view(num_segments, width)
        self._launch(
            "bucket_sum_rows", num_segments, num_segments, rows.shape[1], start, slot, rows, out
        )
        return out

    def contracted_costs(self, costs, root, mapping, roots, num_clusters, out=""):
        stars = self._stars
        if stars is None or root is not stars[0]:
            return self.segment_sum(costs, mapping, num_clusters, out)
        # roots the check just returned: its buckets (clusters by proposed root, in index order)
        # hold every new cluster's members in the order a bucket by new index would — one kernel
        # instead of a counting sort
        _, proposed, start, slot = stars
        count, width = root.shape[0], costs.shape[1]
        rows = self._output(out, num_clusters * width, torch.float64).view(num_clusters, width)
        self._launch(
            "star_sum_rows", count, count, num_clusters, width, start, slot, proposed, root,
            mapping, roots, costs.contiguous(), rows,
        )  # fmt: skip
        return rows

    def coalesce_padded(self, edges, weights, mapping, num_clusters, out=""):
        """As :meth:`Steps.coalesce_padded`; ``out`` names kept buffers to write into (see
        :meth:`_temporary`), "" = new tensors."""
        return self._coalesce(edges, weights, mapping, num_clusters, out, pad=True)

    def coalesce(self, edges, weights, mapping, num_clusters, out=""):
        """As :meth:`Steps.coalesce`; ``out`` as in :meth:`coalesce_padded`."""
        merged, merged_weights, count = self._coalesce(
            edges, weights, mapping, num_clusters, out, pad=False
        )
        total = int(count)
        return merged[:total], merged_weights[:total]

    def _coalesce(self, edges, weights, mapping, num_clusters, out, pad):
        """The coalesced edges into capacity-sized outputs and their count ``[1]`` on the
        device; ``pad``: make the rows after the count inert."""
        num_edges = edges.shape[0]
        merged = self._output(out and out + ".edges", 2 * num_edges, torch.int64)
        merged, merged_weights = (
            merged.view(num_edges, 2),
            self._output(out and out + ".weights", num_edges, torch.float64),
        )
        if num_clusters == 0:  # no clusters, so no edges: nothing to launch
            return merged, merged_weights, torch.zeros(1, dtype=torch.int64, device=self.device)
        low, high = self._temporary("low", num_edges), self._temporary("high", num_edges)
        self._launch("edge_remap", num_edges, num_edges, edges.contiguous(), mapping, low, high)
        start, slot, slot_weights, unique = self._edge_buckets(
            low, num_clusters, high, weights.contiguous()
        )
        end = torch.cumsum(unique, 0)
        pad_to = num_edges if pad else 0
        count = max(num_clusters, pad_to)
        self._launch(
            "edge_write", count, count, num_clusters, pad_to, start, slot, slot_weights, end,
            unique, merged, merged_weights,
        )  # fmt: skip
        return merged, merged_weights, end[-1:]

    def tile_roots(self, costs, edges, weights, tiles, num_images):
        # the kernel reads the edges inside tiles from the tile lists, not from ``edges``; on a
        # GPU a warp runs a tile (one thread's greedy is one long chain of dependent accesses,
        # docs/solver.md), on the host a thread (the warp's scans do more work in all)
        (num_nodes, width), device = costs.shape, self.device
        tile_nodes = num_images * tiles.tile_nodes.shape[0]
        tile_edges = num_images * tiles.tile_edges.shape[0]
        root = torch.arange(num_nodes, device=device)  # nodes outside every tile stay alone
        count = num_images * tiles.num_tiles
        warp = self._use_warps()
        # per tile node: class costs, minimum, and the kernel's int lists (6 for a warp's greedy,
        # 5 for a thread's); per edge: weight and score (and their spares for a warp's), and its
        # int lists (4 or 6)
        edge_doubles, node_ints, edge_ints = (4, 6, 4) if warp else (2, 5, 6)
        arguments = [
            count, tiles.num_tiles, tiles.nodes_per_image, tiles.edges_per_image, width,
            tiles.node_start, tiles.tile_nodes, tiles.edge_start, tiles.tile_edges,
            tiles.edge_ends.contiguous(), costs.contiguous(), weights.contiguous(),
            self._temporary("tile costs", tile_nodes * width, torch.float64),
            self._temporary("tile minima", tile_nodes, torch.float64),
            self._temporary("tile node lists", node_ints * tile_nodes, torch.int32),
            self._temporary("tile edge scores", edge_doubles * tile_edges, torch.float64),
            self._temporary("tile edge lists", edge_ints * tile_edges, torch.int32),
        ]  # fmt: skip
        if warp:  # the lanes' best edges, best classes and live edges
            arguments.append(self._temporary("tile lanes", 3 * _WARP * count, torch.int32))
            self._launch("tile_greedy_warp", _WARP * count, *arguments, root)
        else:
            self._launch("tile_greedy", count, *arguments, root)
        return root

    def checked_roots(self, root, picks, scores, costs, minimum, edges, weights):
        # Steps.checked_roots as two kernels after the star costs (its torch glue was ~20
        # launches a round)
        count = root.shape[0]
        if scores.numel() == 0:  # no edges, no stars
            return root
        root, picks, scores = root.contiguous(), picks.contiguous(), scores.contiguous()
        start, slot = self._star_buckets(root)
        merge_cost = self._star_costs(root, start, slot, costs, minimum, edges, weights)
        best = self._zeros("shrink best", count)
        self._launch("star_shrink_bid", count, count, root, picks, scores, merge_cost, best)
        checked = torch.empty_like(root)
        self._launch("star_shrink", count, count, root, picks, scores, merge_cost, best, checked)
        # the contraction into these roots sums its class costs from the same buckets
        self._stars = (checked, root, start, slot)
        return checked

    def edge_cut(self, edges, labels):
        # in a kept buffer, valid until the next call
        num_edges = edges.shape[0]
        cut = self._temporary("cut", num_edges, torch.bool)
        self._launch("edge_cut", num_edges, num_edges, edges.contiguous(), labels.contiguous(), cut)
        return cut

    def star_costs(self, root, costs, minimum, edges, weights):
        return self._star_costs(root, *self._star_buckets(root), costs, minimum, edges, weights)

    def _star_buckets(self, root: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Every cluster in the bucket of its root, in index order: a root alone costs 0, which
        no member reads (no marks of who is in a star)."""
        self._stars = None  # the buckets the last check left are overwritten
        return self._buckets(root, root.shape[0], root, "star")

    def _star_costs(self, root, start, slot, costs, minimum, edges, weights):
        (num_clusters, width), num_edges = costs.shape, edges.shape[0]
        # the internal edges come from the members' runs of edges as the low end-point (the
        # edges are sorted by it), with no sort of their own
        merge_cost = torch.empty(num_clusters, dtype=torch.float64, device=self.device)
        self._launch(
            "star_cost", num_clusters, num_clusters, width, num_edges, start, slot,
            costs.contiguous(), minimum.contiguous(), root, edges.contiguous(),
            weights.contiguous(), merge_cost,
        )  # fmt: skip
        return merge_cost


_PER_THREAD = threading.local()


def steps_for(device: torch.device) -> Steps:
    """The steps for ``device``: its kernels (:class:`KernelSteps`), or the torch reference
    (:class:`~gpucops.solver.steps.TorchSteps`) where they cannot run (CUDA without CuPy).

    One :class:`KernelSteps` per thread and device, so its scratch buffers serve every later
    solve (on the CPU, faulting fresh pages in for them every solve was a large share of a
    full-resolution solve; ``docs/solver.md``). The buffers stay allocated (the size of the
    largest problem solved so far) until :meth:`KernelSteps.release_scratch`; one per thread,
    so threads never share them.
    """
    if device.type == "cuda":
        try:
            import cupy  # noqa: F401
        except ImportError:
            return TorchSteps()
    device = _resolved(device)
    instances = _PER_THREAD.__dict__.setdefault("steps", {})
    key = (device.type, device.index)
    if key not in instances:
        instances[key] = KernelSteps(device)
    return instances[key]
