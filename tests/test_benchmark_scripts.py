"""The benchmark scripts run end to end (tiny shapes, CPU): they must not rot between GPU runs."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

import gpucops
from gpucops.solver.backend import KernelSteps
from gpucops.synthetic import make_problem

BENCHMARKS = Path(__file__).resolve().parent.parent / "benchmarks"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_kernel_benchmark_smoke(tmp_path):
    records = _load("kernels").main(
        ["--device", "cpu", "--batch", "1", "--channels", "2", "--classes", "3",
         "--size", "9", "20", "--distances", "1", "4", "--json", str(tmp_path / "k.json")]
    )  # fmt: skip
    assert [r["kernel"] for r in records][:2] == ["shift forward", "shift forward+backward"]
    assert all(r["triton ms"] > 0 and r["torch ms"] > 0 for r in records)
    assert (tmp_path / "k.json").exists()


def test_layer_benchmark_smoke():
    record = _load("layer").main(
        ["--batch", "2", "--size", "16", "24", "--classes", "5", "--distances", "1", "4",
         "--samples", "2", "--repeats", "1"]
    )  # fmt: skip
    assert record["forward s"] > 0 and record["backward s"] > 0


def test_solver_benchmark_smoke(tmp_path):
    solver = _load("solver")
    tiny = ["--sizes", "12x72", "--classes", "5", "--batches", "2", "--repeats", "1"]
    default = solver.main([*tiny, "--json", str(tmp_path / "s.json")])
    plain = solver.main([*tiny, "--tile", "0", "--top-fraction", "none"])
    for record in (*default, *plain):
        assert record["parallel_s"] > 0 and record["sequential_s"] > 0
        assert 0.5 < record["quality_min"] <= record["quality_mean"]
    assert (tmp_path / "s.json").exists()


def test_peers_benchmark_smoke(tmp_path):
    pytest.importorskip("bioimage_cpp")
    records = _load("peers").main(
        ["--sizes", "24x72", "--demo-size", "32x72", "--demo-images", "1", "--repeats", "2",
         "--json", str(tmp_path / "p.json")]
    )  # fmt: skip
    assert (tmp_path / "p.json").exists()
    multicut = {(r["problem"], r["solver"]): r for r in records if r["task"] == "multicut"}
    panoptic = [r for r in records if r["task"] == "panoptic"]
    assert len(multicut) == 8 and len(panoptic) == 8  # 2 problems × 4 solvers
    for problem in ("synthetic 24×72", "demo 32×72 #0"):
        # the sequential method is GAEC: bioimage-cpp's energy, and KL only improves on it
        gaec = multicut[problem, "bioimage-cpp GAEC"]
        assert gaec["of_gaec"] == 1.0
        assert multicut[problem, "gpucops sequential"]["energy"] == pytest.approx(gaec["energy"])
        assert multicut[problem, "bioimage-cpp GAEC+KL"]["energy"] <= gaec["energy"] + 1e-9
    assert all(0 <= r["pq"] <= 1 and r["seconds"] > 0 for r in panoptic)


def test_peers_benchmark_says_how_to_install_bioimage_cpp(monkeypatch):
    peers = _load("peers")
    real_import = peers.importlib.import_module

    def without_bioimage_cpp(name, *args):
        if name.startswith("bioimage_cpp"):
            raise ModuleNotFoundError(f"No module named {name!r}")
        return real_import(name, *args)

    monkeypatch.setattr(peers.importlib, "import_module", without_bioimage_cpp)
    with pytest.raises(SystemExit, match=r"pip install -e '\.\[bench\]'"):
        peers.main(["--sizes", "24x40"])


def test_prepass_chain_counts_every_merge_of_the_pre_pass(tmp_path):
    # the counting build makes the solver's decisions: its merge counters add up to the merges
    # the pre-pass reports, tile by tile over a batch solved as one graph, with either kernel
    arguments = ["--cases", "2x32x48", "--classes", "5", "--distances", "1", "4"]
    records = _load("prepass_chain").main([*arguments, "--json", str(tmp_path / "c.json")])
    assert json.loads((tmp_path / "c.json").read_text()) == records
    thread, warp = records
    assert (thread["kernel"], warp["kernel"]) == ("thread", "warp")
    for record in records:
        assert record["tiles"] == 2 * 2 * 3 and record["merges"] == record["tile_merges"] > 0
        assert 0 < record["mean_tile_chain"] <= record["longest_warp_chain"]
    assert warp["merges"] == thread["merges"]
    # a warp's lanes share each merge's work: a shorter chain, more work in all
    assert warp["longest_warp_chain"] < thread["longest_warp_chain"]
    assert warp["mean_lane_work"] > warp["mean_tile_chain"]


def test_sort_chain_models_both_sorts_on_the_buckets_a_solve_sorts(tmp_path):
    study = _load("sort_chain")
    # by hand: [3, 2, 1] — three passes' items and three moves; a network of 33 or 65 items is 6
    # or 7 levels, 21 or 28 steps of 1 or 2 pairs a lane
    assert study.shell_steps([3, 2, 1]) == 5 and study.shell_steps([1, 2, 3]) == 2
    assert study.bitonic_steps(2) == 1 and study.bitonic_steps(33) == 21
    assert study.bitonic_steps(65) == 56
    arguments = ["--cases", "1x72x96", "--classes", "5", "--json", str(tmp_path / "s.json")]
    (record,) = study.main(arguments)
    assert json.loads((tmp_path / "s.json").read_text()) == [record]
    launches = record["launches"]
    assert record["sort_launches"] == len(launches) > 0
    assert all(0 < launch["largest"] for launch in launches)
    assert record["thread_chain"] > record["warp_chain"] > 0


def test_warp_kernels_benchmark_checks_both_kernels_on_the_same_problem():
    arguments = ["--device", "cpu", "--size", "32", "48", "--classes", "5", "--distances", "1"]
    records = _load("warp_kernels").main([*arguments, "4", "--repeats", "1"])
    assert [(r["step"], r["kernels"]) for r in records] == [
        ("tile pre-pass", "thread per item"), ("its contraction", "thread per item"),
        ("tile pre-pass", "warp per item"), ("its contraction", "warp per item"),
    ]  # fmt: skip
    assert all(r["same"] and r["seconds"] > 0 for r in records)


def test_prepass_levels_study_runs_the_solvers_own_solve_at_one_level(tmp_path):
    # one level is the solver's own solve (the same objective); two levels, a lower chain
    study = _load("prepass_levels")
    arguments = ["--sizes", "32x48", "--seeds", "1", "--classes", "5", "--distances", "1", "4"]
    records = study.main([*arguments, "--json", str(tmp_path / "l.json")])
    assert json.loads((tmp_path / "l.json").read_text()) == records
    one, two = records
    p = make_problem(1, 32, 48, 5, (1, 4), seed=1)
    solved = gpucops.solve(p.node_costs, p.edge_costs, p.partitionable, p.distances)
    assert one["objective"] == solved.objective.item() and len(one["level_chains"]) == 1
    assert two["tiles"] == [8, 16] and len(two["level_chains"]) == 2
    assert 0.99 < two["quality"] <= 1.5


def test_gpu_model_benchmark_smoke(tmp_path):
    records = _load("gpu_model").main(
        ["--cases", "2x16x72", "--classes", "5", "--where", "3", "--json", str(tmp_path / "g.json")]
    )
    assert json.loads((tmp_path / "g.json").read_text()) == records
    keys = ["case", "rounds", "torch_ops", "launches", "syncs", "bytes"]
    assert [list(r) for r in records] == [keys]
    assert all(records[0][key] > 0 for key in keys[1:])


def test_a_round_waits_for_the_device_once_and_the_tail_copies_once():
    # issue 24: sizes left on the device, read with the pass's questions — one read a round;
    # the exact tail's arrays go to the host in one transfer
    gpu_model = _load("gpu_model")
    p = make_problem(2, 24, 72, 5, seed=1)
    problem = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    rounds, _ = gpu_model.count_solve(problem, {"tail": 0})
    syncs = [tally.syncs for name, tally in rounds.phases if name.startswith("round")]
    assert len(syncs) > 1 and set(syncs) == {1}
    tail, _ = gpu_model.count_solve(problem, {"tail": 10**6})  # both images finish in round 1
    assert [(name, tally.syncs) for name, tally in tail.phases if name.startswith("round")] == [
        ("round 1", 2)
    ]


def test_gpu_model_counts_an_injected_sync(monkeypatch):
    # two host reads more in every round — an item of a reduction (a launch, a transfer) and a
    # list of a slice (a view, hooked) — and nothing else changes
    gpu_model = _load("gpu_model")
    p = make_problem(1, 24, 72, 5, seed=1)
    problem = (p.node_costs, p.edge_costs, p.partitionable, p.distances)
    before, _ = gpu_model.count_solve(problem, {"tail": 0})  # rounds, not the exact tail
    star_roots = KernelSteps.star_roots

    def with_syncs(steps, picks, *args):
        int(picks.max())
        picks[:1].tolist()
        return star_roots(steps, picks, *args)

    monkeypatch.setattr(KernelSteps, "star_roots", with_syncs)
    after, _ = gpu_model.count_solve(problem, {"tail": 0})
    assert before.rounds > 1
    assert [name for name, _ in after.phases] == [name for name, _ in before.phases]
    for (name, b), (_, a) in zip(before.phases, after.phases, strict=True):
        added = (a.torch_ops - b.torch_ops, a.launches - b.launches, a.syncs - b.syncs)
        assert added == ((3, 1, 2) if name.startswith("round") else (0, 0, 0)), name
