"""Compile C/C++ sources shipped with gpucops into shared libraries for the host, once, cached.

The cache lives in ``$GPUCOPS_CACHE_DIR`` (default ``$XDG_CACHE_HOME/gpucops`` or
``~/.cache/gpucops``), one library per (source, flags, compiler) hash, so an edited source or a
different compiler rebuilds and concurrent processes never see a half-written file (each writes to
a temporary name and renames it into place).

A cached file is trusted only as far as it is checked: beside each library a record (``.json``)
holds its size and sha256, written after the build produced a non-empty library that exports the
expected symbols. A library whose record is missing or does not match (truncated, corrupted,
replaced) is rebuilt, never loaded — loading a truncated shared object kills the process with a
bus error. A failed or empty build is never cached. With no compiler at hand, a verified library
of the same source and flags (built by any compiler) still serves.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from importlib import resources
from pathlib import Path

__all__ = ["build_library", "cache_dir", "compiler", "load_library"]

DEFAULT_FLAGS = ("-O3", "-std=c++17", "-shared", "-fPIC")


def cache_dir() -> Path:
    """Where compiled libraries are kept (created on demand)."""
    root = os.environ.get("GPUCOPS_CACHE_DIR")
    if not root:  # unset or empty (an empty path would mean the working directory)
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


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _record(library: Path) -> Path:
    return library.with_suffix(".json")


def _verified(library: Path) -> bool:
    """Whether ``library`` exists and matches the record written when it was built."""
    try:
        record = json.loads(_record(library).read_text())
        return library.stat().st_size == record["size"] and _sha256(library) == record["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _check_built(library: Path, source: Path, cxx: str, symbols: Sequence[str]) -> None:
    """A build that made no library, an empty one, or one without ``symbols`` is an error."""
    problem = None
    if not library.is_file() or library.stat().st_size == 0:
        problem = "it produced no library"
    else:
        try:
            loaded = ctypes.CDLL(str(library))
            missing = [name for name in symbols if not hasattr(loaded, name)]
            if missing:
                problem = f"the library lacks {', '.join(missing)}"
        except OSError as error:
            problem = f"the library does not load: {error}"
    if problem:
        raise RuntimeError(
            f"compiling {source.name} with {cxx} failed: {problem} (is CXX={cxx!r} a C++17 "
            "compiler?)"
        )


def build_library(
    source: Path,
    flags: tuple[str, ...] = DEFAULT_FLAGS,
    depends: tuple[Path, ...] = (),
    symbols: Sequence[str] = (),
) -> Path:
    """Compile ``source`` into a shared library in the cache (if no verified one is there); its
    path.

    ``depends`` (headers it includes) are part of the cache key, so editing one rebuilds;
    ``symbols``: functions the library must export for the build to count.
    """
    texts = [path.read_bytes() for path in (source, *depends)]
    key = hashlib.sha256(b"\0".join([*texts, " ".join(flags).encode()])).hexdigest()[:16]
    folder = cache_dir()
    name = os.environ.get("CXX", "g++")
    if shutil.which(name) is None:
        # no compiler: any verified build of this source and flags will do
        for cached in sorted(folder.glob(f"{source.stem}-{key}-*.so")):
            if _verified(cached):
                return cached
        compiler()  # raises, naming the compiler
    version = hashlib.sha256(_compiler_version(name).encode()).hexdigest()[:12]
    target = folder / f"{source.stem}-{key}-{version}.so"
    if _verified(target):
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, temporary = tempfile.mkstemp(dir=folder, prefix=f".{source.stem}-", suffix=".so")
    except OSError as error:
        raise RuntimeError(
            f"gpucops cannot write its build cache {folder} ({error.strerror}); set "
            "GPUCOPS_CACHE_DIR to a writable folder"
        ) from None
    os.close(fd)
    os.unlink(temporary)  # the compiler must create it: an empty placeholder is no build
    try:
        result = subprocess.run(
            [name, *flags, str(source), "-o", temporary], capture_output=True, text=True
        )
        if result.returncode != 0:
            raise RuntimeError(f"compiling {source.name} with {name} failed:\n{result.stderr}")
        _check_built(Path(temporary), source, name, symbols)
        record = {"size": os.path.getsize(temporary), "sha256": _sha256(Path(temporary))}
        # the library first, then its record: a reader that sees the record sees the library
        os.replace(temporary, target)
        fd, record_temporary = tempfile.mkstemp(dir=folder, prefix=".record-", suffix=".json")
        with os.fdopen(fd, "w") as handle:
            json.dump(record, handle)
        os.replace(record_temporary, _record(target))
    finally:
        if os.path.exists(temporary):
            os.unlink(temporary)
    return target


@functools.cache
def load_library(
    package: str,
    filename: str,
    flags: tuple[str, ...] = DEFAULT_FLAGS,
    symbols: tuple[str, ...] = (),
) -> ctypes.CDLL:
    """Build (once) and load the shipped source ``package/filename``; cached per process."""
    with resources.as_file(resources.files(package) / filename) as source:
        return ctypes.CDLL(str(build_library(Path(source), flags, symbols=symbols)))
