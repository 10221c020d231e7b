"""Golden labelings: hashes of the solvers' default results on fixed problems.

Recorded once (``python -m tests.golden --record``) before the solver's code moved into the
``gpucops.solver`` package, and compared on every test run (``tests/test_golden.py``), so a
refactoring that changes any default labeling — a class, a segment id or a bit of the
objective — fails. Only record again for a deliberate change of the solver's results, and say
so in the commit.
"""

from __future__ import annotations

import hashlib
import json
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

import gpucops
from gpucops.synthetic import make_problem

RECORD = Path(__file__).with_name("golden_labelings.json")
DISTANCES = (1, 4, 16)


def labeling_hash(classes: torch.Tensor, segments: torch.Tensor, objective: torch.Tensor) -> str:
    """sha256 of the labeling's int64 classes and segments and its float64 objective bits."""
    digest = hashlib.sha256()
    for tensor, dtype in ((classes, torch.int64), (segments, torch.int64), (objective, None)):
        tensor = tensor.detach().cpu().contiguous()
        digest.update((tensor if dtype is None else tensor.to(dtype)).numpy().tobytes())
    return digest.hexdigest()


def _label_mask(batch: int, num_classes: int, seed: int) -> torch.Tensor:
    """Forbid about a third of the labels of every image (never all of them)."""
    generator = torch.Generator().manual_seed(seed)
    mask = torch.rand(batch, num_classes, generator=generator) < 0.33
    mask[:, seed % num_classes] = False
    return mask


def _grid_cases(device: str) -> Iterator[tuple[str, Callable[[], tuple]]]:
    shapes = [(1, 24, 40, 19), (3, 24, 40, 19), (1, 40, 64, 133), (2, 32, 48, 133), (1, 64, 96, 19)]
    for seed, (batch, height, width, classes) in enumerate(shapes):
        problem = make_problem(batch, height, width, classes, DISTANCES, seed=seed, device=device)
        inputs = (problem.node_costs, problem.edge_costs, problem.partitionable, DISTANCES)
        mask = _label_mask(batch, classes, seed).to(device)
        for tile in (0, 4, 16):
            for masked in (False, True):
                name = f"solve B{batch} {height}x{width} K{classes} tile{tile} mask{int(masked)}"

                def run(inputs=inputs, tile=tile, mask=mask if masked else None):
                    return gpucops.solve(*inputs, tile=tile, label_mask=mask)

                yield name, run
        name = f"solve B{batch} {height}x{width} K{classes} default"
        yield name, lambda inputs=inputs: gpucops.solve(*inputs)
        name = f"solve B{batch} {height}x{width} K{classes} sequential"
        yield name, lambda inputs=inputs: gpucops.solve(*inputs, method="sequential")


def random_graph(seed: int, nodes: int, classes: int, images: int) -> dict[str, torch.Tensor]:
    """A graph of ``images`` images with shuffled image ids, duplicate and reversed edges."""
    generator = torch.Generator().manual_seed(seed)
    image_index = torch.randint(0, images, (nodes,), generator=generator)
    image_index[:images] = torch.arange(images)  # every image holds nodes
    node_costs = torch.randn(nodes, classes, generator=generator)
    pairs = torch.randint(0, nodes, (6 * nodes, 2), generator=generator)
    keep = (pairs[:, 0] != pairs[:, 1]) & (image_index[pairs[:, 0]] == image_index[pairs[:, 1]])
    edges = pairs[keep]
    edge_costs = torch.randn(edges.shape[0], generator=generator) + 0.5
    partitionable = torch.rand(classes, generator=generator) < 0.5
    return {
        "node_costs": node_costs,
        "edges": edges,
        "edge_costs": edge_costs,
        "partitionable": partitionable,
        "image_index": image_index,
    }


def _graph_cases(device: str) -> Iterator[tuple[str, Callable[[], tuple]]]:
    for seed, (nodes, classes, images) in enumerate([(60, 3, 1), (200, 5, 3), (500, 19, 4)]):
        graph = {k: v.to(device) for k, v in random_graph(seed, nodes, classes, images).items()}
        tiles = (torch.arange(nodes) // 7).to(device)
        mask = _label_mask(images, classes, seed).to(device)
        for name, options in (
            ("default", {}),
            ("tiles", {"tiles": tiles}),
            ("mask", {"label_mask": mask}),
            ("sequential", {"method": "sequential"}),
        ):

            def run(graph=graph, options=options):
                return gpucops.solve_graph(**graph, **options)

            yield f"solve_graph N{nodes} K{classes} I{images} {name}", run


def cases(device: str = "cpu") -> Iterator[tuple[str, Callable[[], tuple]]]:
    """Every recorded case, its inputs on ``device`` (the results must not depend on it)."""
    yield from _grid_cases(device)
    yield from _graph_cases(device)


def current_hashes(device: str = "cpu") -> dict[str, str]:
    hashes = {}
    for name, run in cases(device):
        result = run()
        hashes[name] = labeling_hash(result.classes, result.segments, result.objective)
    return hashes


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit("usage: python -m tests.golden --record")
    RECORD.write_text(json.dumps(current_hashes(), indent=1, sort_keys=True) + "\n")
    print(f"recorded {RECORD}")
