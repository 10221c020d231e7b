"""Reading detectron2's ``.pkl`` weight files without running code from them.

detectron2's model-zoo files (``ImageNetPretrained/MSRA/R-50.pkl``, ``DeepLab/R-52.pkl``, …) are
pickled dicts of numpy arrays (Python 2 pickles for the Caffe2 ones). A plain ``pickle.load`` would
call any function the file names; this unpickler resolves only the globals that rebuild numpy arrays
and dtypes, so a file naming anything else (``os.system``, ``builtins.eval``, a class) is refused
before it is called. Everything else in such a file is plain containers, strings and numbers,
which the pickle format builds without globals.
"""

from __future__ import annotations

import importlib
import pickle
from pathlib import Path

__all__ = ["load_pickle"]

# (module, name) → (module it lives in under numpy 1 or 2, name): what numpy's own pickling of
# arrays, dtypes and numpy scalars refers to (protocols 0–5, numpy 1.x and 2.x)
_ALLOWED = {
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"): ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"): ("_codecs", "encode"),  # bytes in protocols 0–2: latin-1 only
}


def _latin1_bytes(text: str, encoding: str = "latin1") -> bytes:
    """What pickles of protocols 0–2 call (as ``_codecs.encode``) to rebuild ``bytes``; other
    codecs (zlib, …) are refused."""
    if encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError(f"refuses _codecs.encode with codec {encoding!r}")
    return text.encode("latin1")


def _resolve(module: str, name: str) -> object:
    if (module, name) == ("_codecs", "encode"):
        return _latin1_bytes
    try:
        return getattr(importlib.import_module(module), name)
    except ImportError:  # numpy 1.x names its core package numpy.core
        return getattr(importlib.import_module(module.replace("numpy._core", "numpy.core")), name)


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(
                f"refuses global {module}.{name} (only numpy arrays are read from weight files)"
            )
        return _resolve(*_ALLOWED[module, name])


def load_pickle(path: str | Path) -> object:
    """The object pickled in ``path`` (Python 2 pickles read as latin-1, as detectron2 does),
    built from plain containers, strings, numbers and numpy arrays only.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: one line naming the file when it is not such a pickle (another global,
            damaged or truncated).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights {path} do not exist")
    with open(path, "rb") as handle:
        try:
            return _ArraysOnly(handle, encoding="latin1").load()
        except Exception as error:  # any failure of a file that ran no code: "unreadable"
            first = (str(error).strip().splitlines() or [type(error).__name__])[0]
            raise ValueError(f"weights {path} cannot be read safely: {first}") from None
