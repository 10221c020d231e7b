"""Triton kernels of gpucops, each beside its torch reference (installed as gpucops.kernels)."""
