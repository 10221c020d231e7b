"""Reading images as the network takes them: ``[H, W, 3]`` uint8 RGB, whatever the file's mode."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

__all__ = ["image_size", "open_image", "read_image"]

# what Pillow raises for a missing, unreadable or damaged file (found by tests/test_fuzz.py):
# OSError (missing, truncated, UnidentifiedImageError), ValueError (bad chunks), SyntaxError (bad
# headers), EOFError, struct.error and zlib.error (short or corrupt compressed data)
DAMAGED_IMAGE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, zlib.error)

# modes PIL gives 16-bit grayscale files (PNG, TIFF) in: converting them to RGB clips every
# value above 255, so a 16-bit image would read as uniformly white
_WIDE_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def _unreadable(what: str, path: str | Path, error: Exception) -> ValueError:
    return ValueError(f"cannot read {what} {path}: {error}")


def open_image(path: str | Path, what: str = "image") -> Image.Image:
    """The decoded image at ``path`` (pixels loaded, file closed); a missing, unreadable or
    damaged file is one ``ValueError`` naming ``what`` and the file."""
    try:
        image = Image.open(path)
    except DAMAGED_IMAGE_ERRORS as error:
        raise _unreadable(what, path, error) from None
    try:
        image.load()  # decodes now, so damage surfaces here; closes a single-frame file
    except DAMAGED_IMAGE_ERRORS as error:
        image.close()
        raise _unreadable(what, path, error) from None
    return image


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of the image at ``path`` from its header, without decoding the pixels; errors
    as :func:`open_image`."""
    try:
        with Image.open(path) as image:
            return image.height, image.width
    except DAMAGED_IMAGE_ERRORS as error:
        raise _unreadable("image", path, error) from None


def read_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as ``[H, W, 3]`` uint8 RGB. 16-bit grayscale is scaled to 8 bits
    (65535 → 255); float images and unreadable files are a ``ValueError`` naming the file."""
    image = open_image(path)
    if image.mode in _WIDE_GRAY:
        values = np.asarray(image).astype(np.int64)
        if values.size and (values.min() < 0 or values.max() > 65535):
            raise ValueError(f"image {path} has {image.mode} values outside 16 bits")
        gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
        return np.repeat(gray[..., None], 3, axis=2)
    if image.mode == "F":
        raise ValueError(f"image {path} holds float pixels; save it with 8 or 16 bits")
    return np.array(image.convert("RGB"))  # writable: torch wraps it
