"""Every option of the parallel method, with its default, in one place.

The parallel solver (:mod:`gpucops.solver.rounds`) first runs the exact sequential greedy inside
small tiles of nodes (:mod:`gpucops.solver.tiles`), then rounds of score → pick → stars → check →
contract on the contracted graph until no edge is worth contracting, each image finished by the
exact greedy once it is small. These options shape it; their defaults favour quality
(``docs/solver.md`` gives the reasons, ``benchmarks/RESULTS.md`` the measurements that chose
them). They shape the parallel method only; the sequential one ignores them:

* ``tile``: the side of the square pixel tiles of the greedy pre-pass (grids). The rounds pick
  merges from every edge at once, before any cluster has summed its evidence; the first merges,
  where they lose most against the sequential greedy, follow the greedy's own order instead.
  0 = no pre-pass. Full-resolution problems made from stride-4 costs are solved with the stride
  (:func:`gpucops.inference.build_problem` pairs them with it).
* ``top_fraction``: each round only the top fraction of each image's positive scores may merge,
  so merges follow the greedy order in bands of equal size, at the cost of more rounds.
  None = every positive score (fewest rounds).
* ``tail``: an image that has come down to at most this many clusters is finished by the exact
  sequential greedy in one step (the pre-pass's kernel with the whole image as its tile) instead
  of a tail of nearly empty rounds — each of which costs a GPU its launches and host syncs. 0 =
  rounds to the end.
* ``tail_edges``: with a tail, an image is finished as well once it has at most this many edges
  (0 = the cluster count alone). The greedy's time follows the edges: a full-resolution image's
  graph of ~2,000 clusters holds ~6,000 edges, a 256×512 image's of ~1,600 clusters ~16,000 — so
  the edge count ends the large images' nearly empty rounds 5–9 rounds sooner and leaves the small
  ones to the cluster count.

Tried and not adopted (``docs/solver.md``, "Tried, not adopted"; figures in
``benchmarks/RESULTS.md``): a goodness gate ε on star merges, a score threshold α per image
(replaced by ``top_fraction``), the coin's stars without free leaves, and class-changing boundary
moves after the contraction.
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass

__all__ = ["DEFAULTS", "ParallelOptions"]


@dataclass(frozen=True)
class ParallelOptions:
    """The parallel method's options (see the module docstring).

    Attributes:
        tile: side of the pixel tiles of the exact greedy pre-pass, an integer ≥ 0 (0 = none).
        top_fraction: in (0, 1], the share of each image's positive scores that may merge per
            round, or None for all.
        tail: clusters of an image at or below which the exact greedy finishes it, an integer
            ≥ 0 (0 = none).
        tail_edges: with a tail, edges of an image at or below which the exact greedy also
            finishes it, an integer ≥ 0 (0 = none).
    """

    tile: int = 16
    top_fraction: float | None = 0.3
    tail: int = 1024
    tail_edges: int = 6144

    def __post_init__(self) -> None:
        for name in ("tile", "tail", "tail_edges"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise ValueError(f"{name} must be an integer ≥ 0, got {value!r}")
        fraction = self.top_fraction
        if fraction is not None and (
            isinstance(fraction, bool)
            or not isinstance(fraction, numbers.Real)
            or not 0 < fraction <= 1
        ):
            raise ValueError(f"top_fraction must lie in (0, 1] or be None, got {fraction!r}")


DEFAULTS = ParallelOptions()
