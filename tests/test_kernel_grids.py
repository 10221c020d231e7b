"""Every Triton launcher's grid fits CUDA's limits at the largest shapes the project supports
(issue 19): the interpreter has no limits, so only this check stands between those shapes and a
failed launch on a GPU."""

from __future__ import annotations

import pytest

from gpucops.kernels import costs, perturb, shift
from gpucops.kernels._dispatch import GRID_LIMITS, checked_grid

# The largest problems the project solves and trains on: full-resolution Cityscapes-sized
# images (1024×2048) with COCO's 133 classes, the layer benchmark's batch of 24 with up to 8
# perturbations each, the full-resolution distances (1 and ×4 of the model's 1, 4, 16, 32, 64),
# and 256 feature channels at full resolution for the shift.
HEIGHT, WIDTH, CLASSES, BATCH, SAMPLES, DISTANCES, CHANNELS = 1024, 2048, 133, 24, 8, 6, 256


PIXELS = HEIGHT * WIDTH
# each launcher's grid with the GPU's block sizes (this process may be interpreting, whose
# blocks are larger)
LAUNCHES = {
    "perturb node costs": lambda: perturb.launch_grid(
        BATCH * SAMPLES, CLASSES * PIXELS, perturb.GPU_BLOCK
    ),
    "perturb edge costs": lambda: perturb.launch_grid(
        BATCH * SAMPLES, 2 * DISTANCES * PIXELS, perturb.GPU_BLOCK
    ),
    "node costs": lambda: costs.launch_grid(BATCH * CLASSES, PIXELS, costs.GPU_BLOCK),
    "edge costs": lambda: costs.launch_grid(BATCH * 2 * DISTANCES, PIXELS, costs.GPU_BLOCK),
    "shift forward": lambda: shift.launch_grid(
        DISTANCES * BATCH * 2 * CHANNELS, HEIGHT, WIDTH, shift.GPU_TILE
    ),
    "shift backward": lambda: shift.launch_grid(BATCH * CHANNELS, HEIGHT, WIDTH, shift.GPU_TILE),
    # beyond the supported shapes, where blocks along y stopped the costs: one 128 M-pixel image
    "costs of 2^27 pixels": lambda: costs.launch_grid(CLASSES, 2**27, costs.GPU_BLOCK),
}


@pytest.mark.parametrize("name", sorted(LAUNCHES))
def test_launch_grids_fit_cuda_at_the_largest_shapes(name):
    grid = LAUNCHES[name]()
    assert all(0 < size <= limit for size, limit in zip(grid, GRID_LIMITS, strict=False)), (
        name,
        grid,
    )


def test_a_grid_beyond_cuda_limits_is_a_clear_error():
    assert checked_grid((2**31 - 1, 65535, 65535), "k") == (2**31 - 1, 65535, 65535)
    for grid in [(2**31, 1), (1, 65536), (1, 1, 65536)]:
        with pytest.raises(ValueError, match="more than CUDA's"):
            checked_grid(grid, "k")
