"""NVRTC through ctypes, as CuPy calls it: compile a CUDA source with CuPy's options, no GPU
needed (``nvrtcCompileProgram`` only; NVRTC API reference, "NVRTC" chapter of the CUDA Toolkit
documentation)."""

from __future__ import annotations

import ctypes
import glob
import os
import sysconfig
from pathlib import Path


def find_nvrtc() -> Path | None:
    """libnvrtc from CuPy's wheels (``nvidia-cuda-nvrtc``), ``$CUDA_PATH`` or ``/usr/local/cuda``;
    None where none is installed."""
    site = Path(sysconfig.get_paths()["purelib"])
    roots = [os.environ.get("GPUCOPS_NVRTC", "")]
    roots += glob.glob(str(site / "nvidia" / "*" / "lib" / "libnvrtc.so*"))
    for cuda in (os.environ.get("CUDA_PATH", ""), "/usr/local/cuda"):
        roots += glob.glob(os.path.join(cuda, "lib64", "libnvrtc.so*")) if cuda else []
    for candidate in roots:
        if candidate and Path(candidate).is_file() and "builtins" not in candidate:
            return Path(candidate)
    return None


def compile_ptx(library: Path, source: str, name: str, options: tuple[str, ...]) -> tuple[int, str]:
    """(NVRTC's result code, its log) of compiling ``source`` with ``options``."""
    nvrtc = ctypes.CDLL(str(library))
    program = ctypes.c_void_p()
    code = nvrtc.nvrtcCreateProgram(
        ctypes.byref(program), source.encode(), name.encode(), 0, None, None
    )
    if code:
        return code, "nvrtcCreateProgram failed"
    encoded = [option.encode() for option in options]
    array = (ctypes.c_char_p * len(encoded))(*encoded)
    result = nvrtc.nvrtcCompileProgram(program, len(encoded), array)
    size = ctypes.c_size_t()
    nvrtc.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    nvrtc.nvrtcGetProgramLog(program, log)
    nvrtc.nvrtcDestroyProgram(ctypes.byref(program))
    return result, log.value.decode(errors="replace")
