"""Triton kernels of gpucops, each beside its torch reference (installed as gpucops.kernels).

Each public function takes an ``implementation`` argument: ``auto`` runs the Triton kernel on
CUDA tensors and the torch reference on CPU tensors (always: the interpreter is for tests, far
slower than the reference); ``triton`` forces the kernel — on CPU tensors only in the Triton
interpreter, i.e. with ``TRITON_INTERPRET=1`` set before this package is imported, as the kernel
tests do without a GPU; ``torch`` forces the reference.

* :func:`edge_feature_shift` — the affinity branch's edge features S_d (autograd);
* :func:`node_costs_from_logits`, :func:`edge_costs_from_logits` — solver costs with cost
  dropout from a counter-based generator (autograd);
* :func:`perturb_costs` — the B·N perturbed problems of the layer's backward.
"""

from .costs import edge_costs_from_logits, node_costs_from_logits, philox_uniform
from .perturb import perturb_costs, perturb_costs_reference
from .shift import edge_feature_shift, edge_feature_shift_reference

__all__ = [
    "edge_costs_from_logits",
    "edge_feature_shift",
    "edge_feature_shift_reference",
    "node_costs_from_logits",
    "perturb_costs",
    "perturb_costs_reference",
    "philox_uniform",
]
