"""CUDA C sources of the parallel contraction, shipped as package data and loaded by CuPy or
built for the host (see docs/ARCHITECTURE.md)."""
