"""Reading images as the network takes them: ``[H, W, 3]`` uint8 RGB, whatever the file's mode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

__all__ = ["read_image"]

# modes PIL gives 16-bit grayscale files (PNG, TIFF) in: converting them to RGB clips every
# value above 255, so a 16-bit image would read as uniformly white
_WIDE_GRAY = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def read_image(path: str | Path) -> np.ndarray:
    """The image at ``path`` as ``[H, W, 3]`` uint8 RGB. 16-bit grayscale is scaled to 8 bits
    (65535 → 255); float images and unreadable files are a ``ValueError`` naming the file."""
    try:
        with Image.open(path) as image:
            if image.mode in _WIDE_GRAY:
                values = np.asarray(image).astype(np.int64)
                if values.size and (values.min() < 0 or values.max() > 65535):
                    raise ValueError(f"image {path} has {image.mode} values outside 16 bits")
                gray = ((values * 255 + 32767) // 65535).astype(np.uint8)
                return np.repeat(gray[..., None], 3, axis=2)
            if image.mode == "F":
                raise ValueError(f"image {path} holds float pixels; save it with 8 or 16 bits")
            return np.array(image.convert("RGB"))  # writable: torch wraps it
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"cannot read image {path}: {error}") from None
