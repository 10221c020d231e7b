"""Compile C/C++ sources shipped with gpucops into shared libraries for the host, once, cached.

The cache lives in ``$GPUCOPS_CACHE_DIR`` (default ``$XDG_CACHE_HOME/gpucops`` or
``~/.cache/gpucops``), one library per (source, compiler, flags) hash, so an edited source or a
different compiler rebuilds and concurrent processes never see a half-written file (each writes to
a temporary name and renames it into place).
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from importlib import resources
from pathlib import Path

__all__ = ["build_library", "cache_dir", "compiler", "load_library"]

DEFAULT_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC")


def cache_dir() -> Path:
    """Where compiled libraries are kept (created on demand)."""
    root = os.environ.get("GPUCOPS_CACHE_DIR")
    if root is None:
        base = os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))
        root = str(Path(base) / "gpucops")
    return Path(root)


def compiler() -> str:
    """The host C++ compiler: ``$CXX`` or ``g++``; a clear error names it when it is missing."""
    name = os.environ.get("CXX", "g++")
    if shutil.which(name) is None:
        raise RuntimeError(
            f"gpucops builds its CPU solvers with a C++ compiler, but {name!r} was not found; "
            "install g++ (or set CXX to a C++17 compiler)"
        )
    return name


@functools.cache
def _compiler_version(name: str) -> str:
    return subprocess.run([name, "--version"], capture_output=True, text=True, check=True).stdout


def build_library(
    source: Path, flags: tuple[str, ...] = DEFAULT_FLAGS, depends: tuple[Path, ...] = ()
) -> Path:
    """Compile ``source`` into a shared library in the cache (if not already there); its path.

    ``depends`` (headers it includes) are part of the cache key, so editing one rebuilds.
    """
    cxx = compiler()
    texts = [path.read_bytes() for path in (source, *depends)]
    digest = hashlib.sha256(
        b"\0".join([*texts, _compiler_version(cxx).encode(), " ".join(flags).encode()])
    ).hexdigest()[:20]
    target = cache_dir() / f"{source.stem}-{digest}.so"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{source.stem}-", suffix=".so")
    os.close(fd)
    try:
        result = subprocess.run(
            [cxx, *flags, str(source), "-o", temporary], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"compiling {source.name} with {cxx} failed:\n{result.stderr}")
        os.replace(temporary, target)
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


@functools.cache
def load_library(
    package: str, filename: str, flags: tuple[str, ...] = DEFAULT_FLAGS
) -> ctypes.CDLL:
    """Build (once) and load the shipped source ``package/filename``; cached per process."""
    with resources.as_file(resources.files(package) / filename) as source:
        return ctypes.CDLL(str(build_library(Path(source), flags)))
