"""gpucops: GPU-accelerated, fully differentiable COPS panoptic segmentation.

The asymmetric multiway cut (AMWC) on pixel grids and general graphs::

    import gpucops
    lab = gpucops.solve(node_costs, edge_costs, partitionable, distances=(1, 4, 16, 32, 64))
    lab.classes, lab.segments, lab.objective

and multicut (correlation clustering) on any graph, the AMWC with one partitionable class::

    mc = gpucops.multicut(edges, edge_costs)  # positive cost = attractive
    mc.labels, mc.energy
"""

# first: chooses OpenMP's wait policy before torch loads the runtime (see _openmp)
from . import _openmp  # noqa: F401
from .grid import cut_maps, edge_values_to_maps, grid_edges, grid_to_graph
from .labeling import GraphLabeling, MulticutLabeling, PanopticLabeling
from .multicut import multicut, multicut_energy
from .objectives import objective, objective_graph
from .solver import refine, solve, solve_graph

__version__ = "0.1.0"

__all__ = [
    "GraphLabeling",
    "MulticutLabeling",
    "PanopticLabeling",
    "__version__",
    "cut_maps",
    "edge_values_to_maps",
    "grid_edges",
    "grid_to_graph",
    "multicut",
    "multicut_energy",
    "objective",
    "objective_graph",
    "refine",
    "solve",
    "solve_graph",
]
