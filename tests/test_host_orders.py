"""No kernel's result depends on the order its items run in (issue 19): host builds that run every
launch in reverse, shuffled, or on several threads at once, and a ThreadSanitizer build of the
threaded one, run a fuzz set (``tests/kernel_fuzz.py``) and must equal the default build bit for
bit — and a race planted in a kernel must be caught, so the check can fail. The warp-per-item
kernels run their lanes in reverse and shuffled too, and, in a ThreadSanitizer build, as a
warp's 32 threads that each run the uniform code as well (issue 24)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from gpucops.solver.backend import cuda_sources, host_library
from tests.kernel_fuzz import run

ROOT = Path(__file__).resolve().parent.parent
THREADS = ("-DGPUCOPS_ORDER_THREADS",)
TSAN = (*THREADS, "-fsanitize=thread", "-g", "-O1")
# a warp's lanes as 32 threads, each running the warp kernels' uniform code too (cuda/shim.cuh)
LANES = (*TSAN, "-DGPUCOPS_LANE_THREADS")
VARIANTS = {
    "reversed": ("-DGPUCOPS_ORDER_REVERSED",),
    "shuffled": ("-DGPUCOPS_ORDER_SHUFFLED",),
    "threads": THREADS,
    "threadsanitizer": TSAN,
    "lanes as threads": LANES,
    "planted race": TSAN,
    "planted lane race": LANES,
    "planted lane race 2": LANES,
}
TSAN_ROUNDS = 20  # ThreadSanitizer runs ~5× slower: a smaller fuzz set
# planted races, each a text of contraction.cu and its replacement: bucket_count's atomic
# increment made a plain one; in tile_greedy_warp, two writes in the phase right after uniform
# code that reads what they write (the lanes may drift apart between barriers)
PLANTED = {
    "planted race": (
        "gpucops_atomic_add(counts + keys[i], 1LL)",
        "++counts[keys[i]]",
    ),
    "planted lane race": (
        "if (a < 0 || j == e) continue;",
        "if (j == e) u[j] = -1;\n                    if (a < 0 || j == e) continue;",
    ),
    # the compaction's block counts written over the live count the uniform code just read
    "planted lane race 2": ("int* in_block = best_class;", "int* in_block = live;"),
}


def libtsan() -> str | None:
    path = subprocess.run(
        ["g++", "-print-file-name=libtsan.so"], capture_output=True, text=True
    ).stdout.strip()
    return path if os.path.isabs(path) else None


@pytest.fixture(scope="module")
def fuzz_runs(tmp_path_factory) -> dict[str, tuple[subprocess.CompletedProcess, Path]]:
    """Every variant's fuzz run, all at once (each a process: its own build and, for
    ThreadSanitizer, its runtime preloaded)."""
    folder = tmp_path_factory.mktemp("orders")
    sources = {}
    for name, (text, replacement) in PLANTED.items():
        sources[name] = folder / name.replace(" ", "-")
        shutil.copytree(cuda_sources(), sources[name])
        source = sources[name] / "contraction.cu"
        assert source.read_text().count(text) == 1, name
        source.write_text(source.read_text().replace(text, replacement))
    env = dict(os.environ, GPUCOPS_CACHE_DIR=str(folder / "cache"))
    processes = {}
    for name, flags in VARIANTS.items():
        sanitized = "-fsanitize=thread" in flags
        if sanitized and libtsan() is None:
            continue
        out = folder / f"{name}.pt"
        planted = str(sources[name]) if name in sources else None
        rounds = TSAN_ROUNDS if sanitized else 60
        script = (
            f"from tests.kernel_fuzz import main\n"
            f"main({str(out)!r}, {list(flags)!r}, {planted!r}, {rounds})"
        )
        variant_env = env
        if sanitized:
            variant_env = dict(
                env, LD_PRELOAD=libtsan(), TSAN_OPTIONS="halt_on_error=1 exitcode=66"
            )
        processes[name] = (
            subprocess.Popen(
                [sys.executable, "-c", script], cwd=ROOT, env=variant_env,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            ),
            out,
        )  # fmt: skip
    runs = {}
    for name, (process, out) in processes.items():
        stdout, stderr = process.communicate(timeout=600)
        runs[name] = (
            subprocess.CompletedProcess(process.args, process.returncode, stdout, stderr),
            out,
        )
    return runs


def variant(runs, name: str) -> tuple[subprocess.CompletedProcess, Path]:
    if name not in runs:
        pytest.skip("this g++ has no ThreadSanitizer runtime")
    result, out = runs[name]
    if "FATAL: ThreadSanitizer" in result.stderr:  # e.g. a kernel's address layout it refuses
        pytest.skip(f"ThreadSanitizer cannot run here: {result.stderr[:300]}")
    return result, out


@pytest.mark.parametrize(
    "name", ["reversed", "shuffled", "threads", "threadsanitizer", "lanes as threads"]
)
def test_every_order_gives_the_default_builds_results(fuzz_runs, name):
    result, out = variant(fuzz_runs, name)
    assert "ThreadSanitizer" not in result.stderr, result.stderr[-4000:]
    assert result.returncode == 0 and "fuzz done" in result.stdout, result.stderr[-4000:]
    got = torch.load(out)
    rounds = TSAN_ROUNDS if "-fsanitize=thread" in VARIANTS[name] else 60
    expected = run(host_library(), rounds, rounds // 5)
    assert len(got) == len(expected)
    for index, (a, b) in enumerate(zip(got, expected, strict=True)):
        assert torch.equal(a, b), index


@pytest.mark.parametrize("name", PLANTED)
def test_threadsanitizer_catches_a_planted_race(fuzz_runs, name):
    result, _ = variant(fuzz_runs, name)
    assert result.returncode == 66, result.stderr[-3000:]
    assert "ThreadSanitizer: data race" in result.stderr
