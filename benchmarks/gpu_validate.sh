#!/usr/bin/env bash
# The one command to run when a GPU is lent (issue 19; steps and time budget in docs/gpu.md).
#
#   benchmarks/gpu_validate.sh [--out DIR] [--dry-run]
#
# Works from a plain copy of the working tree: the package is put on PYTHONPATH through a folder
# of links (gpucops/ with kernels/ and cuda/ inside it, as the wheel lays them out), so nothing is
# installed and nothing is fetched. Each step runs under its own timeout, so one hang cannot eat
# the window; the budgets add up to 540 s (9 min on one H100/H200; with each step's 5 s kill
# grace, under the device tool's 600 s). Every step's log and figures
# go to DIR (default benchmarks/results/gpu-<UTC time>) with environment.json (date, device,
# versions) and summary.md (each step's status and seconds), and DIR.tar.gz holds them all (one
# file to bring back). Exit status: 0 when every step passed, else 1.
#
# --dry-run: the same steps on the CPU with tiny shapes and short budgets (CI runs it: the script
# itself must not rot between GPU runs). PYTHON: the interpreter (default python3).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

DRY=0
OUT=""
while [ $# -gt 0 ]; do
    case "$1" in
        --dry-run) DRY=1 ;;
        --out) OUT=$2; shift ;;
        *) echo "usage: $0 [--out DIR] [--dry-run]" >&2; exit 2 ;;
    esac
    shift
done
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
OUT=${OUT:-$ROOT/benchmarks/results/gpu-$STAMP}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
PYTHON=${PYTHON:-python3}

# the package as the wheel lays it out, without installing it
SITE="$OUT/.site"
mkdir -p "$SITE/gpucops"
for entry in "$ROOT"/gpucops/*; do ln -sfn "$entry" "$SITE/gpucops/$(basename "$entry")"; done
ln -sfn "$ROOT/kernels" "$SITE/gpucops/kernels"
ln -sfn "$ROOT/cuda" "$SITE/gpucops/cuda"
export PYTHONPATH="$SITE:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
# the host kernels' build cache stays with the results, never in a shared home
export GPUCOPS_CACHE_DIR="$OUT/.cache"

if [ "$DRY" = 1 ]; then
    DEVICE=cpu
    SOLVER_FULL=(--sizes 16x72 --classes 5 --batches 1 --repeats 1)
    SOLVER_CROPS=(--sizes 12x72 --classes 5 --batches 3 --repeats 1)
    KERNELS=(--device cpu --batch 1 --channels 2 --classes 3 --size 9 20 --distances 1 4)
    LAYER=(--batch 2 --size 16 24 --classes 5 --distances 1 4 --samples 2 --repeats 1)
    BENCH=(--sizes 32x64 --model tiny --distances 1 2 --repeats 1 --warmup 0)
    MEMCHECK_SIZE="1, 20, 24"
    WARPS=(--size 32 48 --classes 5 --distances 1 4 --repeats 1)
    SUITES=(--smoke)  # every benchmark of the suites, on tiny shapes
    SCALE=2  # budgets halved: a dry run must stay quick (and still pass on a busy 2-core CI)
else
    DEVICE=cuda
    SOLVER_FULL=(--sizes 1024x2048 --classes 19 133 --batches 1 --repeats 3)
    SOLVER_CROPS=(--sizes 128x256 --classes 19 --batches 24 --repeats 3)
    KERNELS=(--device cuda)
    LAYER=(--batch 24 --size 128 256 --repeats 2)
    BENCH=(--sizes 1024x2048 --repeats 2)
    MEMCHECK_SIZE="2, 64, 96"
    WARPS=(--size 1024 2048)
    SUITES=(-k cuda)  # the CUDA cases; a CPU baseline of this machine would not fit the budget
    SCALE=1
fi

STATUS=0
printf '| step | status | seconds | budget s |\n| --- | --- | --- | --- |\n' > "$OUT/summary.md"

# step NAME BUDGET_SECONDS COMMAND...: run under its own timeout, log to NAME.log
step() {
    local name=$1 budget=$(( $2 / SCALE )) start end code status
    shift 2
    echo "== $name (budget ${budget} s)"
    start=$(date +%s)
    timeout --kill-after=5 "$budget" "$@" > "$OUT/$name.log" 2>&1
    code=$?
    end=$(date +%s)
    case $code in
        0) status=ok ;;
        124|137) status="timed out"; STATUS=1 ;;
        *) status="failed ($code)"; STATUS=1 ;;
    esac
    echo "   $status in $(( end - start )) s"
    printf '| %s | %s | %s | %s |\n' "$name" "$status" "$(( end - start ))" "$budget" >> "$OUT/summary.md"
}

# 1. what ran where: date, device, driver, toolkit, versions (also a check that the package and
#    the test dependencies import)
step environment 30 "$PYTHON" - "$OUT/environment.json" "$DRY" <<'PY'
import datetime, json, platform, shutil, subprocess, sys
import numpy, torch, triton
import gpucops, hypothesis  # the package from the tree, and what the tests need
record = {
    "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    "dry_run": sys.argv[2] == "1", "python": platform.python_version(), "torch": torch.__version__,
    "torch_cuda": torch.version.cuda, "triton": triton.__version__, "numpy": numpy.__version__,
    "hypothesis": hypothesis.__version__, "gpucops": str(gpucops.__file__),
}
try:
    import cupy
    record["cupy"] = cupy.__version__
except ImportError as error:
    record["cupy"] = f"missing ({error})"
if torch.cuda.is_available():
    props = torch.cuda.get_device_properties(0)
    record.update(device=props.name, capability=f"{props.major}.{props.minor}",
                  multiprocessors=props.multi_processor_count,
                  memory_gib=round(props.total_memory / 2**30, 1))
else:
    record["device"] = "cpu (no CUDA device)"
for tool, args in (("nvidia-smi", ["--query-gpu=driver_version,clocks.sm,clocks.mem",
                                   "--format=csv,noheader"]), ("nvcc", ["--version"])):
    path = shutil.which(tool)
    record[tool] = (subprocess.run([path, *args], capture_output=True, text=True).stdout.strip()
                    if path else "not found")
record["compute-sanitizer"] = shutil.which("compute-sanitizer") or "not found"
json.dump(record, open(sys.argv[1], "w"), indent=1)
print(json.dumps(record, indent=1))
if sys.argv[2] != "1" and not torch.cuda.is_available():
    sys.exit("no CUDA device: run with --dry-run")
PY

# 2. the gpu-marked tests (a dry run collects them: all skip); junit XML for the record
step gpu-tests 150 "$PYTHON" -m pytest -q -m gpu -p no:cacheprovider tests \
    --junitxml "$OUT/gpu-tests.xml"

# 3. the solver on the device: full resolution (K = 19 and 133) and the batch of 24 stride-4
#    crops of the training layer, with rounds and merges per round
step solver-full 60 "$PYTHON" benchmarks/solver.py --device "$DEVICE" "${SOLVER_FULL[@]}" \
    --sequential-limit 0 --json "$OUT/solver-full.json"
step solver-crops 30 "$PYTHON" benchmarks/solver.py --device "$DEVICE" "${SOLVER_CROPS[@]}" \
    --sequential-limit 0 --json "$OUT/solver-crops.json"
# the pre-pass and its contraction with a warp per item against a thread per item (issue 24:
# whether a GPU keeps the warp kernels), results checked equal
step warp-kernels 20 "$PYTHON" benchmarks/warp_kernels.py --device "$DEVICE" "${WARPS[@]}" \
    --json "$OUT/warp-kernels.json"

# 4. the Triton kernels against their torch references, and the layer (B = 24)
if [ "$DRY" = 1 ]; then export TRITON_INTERPRET=1; fi  # the kernels' CPU smoke run interprets
step kernels 45 "$PYTHON" benchmarks/kernels.py "${KERNELS[@]}" --json "$OUT/kernels.json"
unset TRITON_INTERPRET
step layer 50 "$PYTHON" benchmarks/layer.py --device "$DEVICE" "${LAYER[@]}" \
    --json "$OUT/layer.json"

# 5. `gpucops bench`: the full-resolution row (network, solver backends, whole inference)
step bench 50 "$PYTHON" -m gpucops bench --device "$DEVICE" --resolutions full "${BENCH[@]}" \
    --json "$OUT/bench.json"

# 6. the GPU baseline of the pytest-benchmark suites (README, "Benchmarks"), stored as `make
#    bench-save` stores one: check DIR/baselines/<machine id>/ in as benchmarks/baselines/<id>/
BASELINE_ID=$("$PYTHON" "$ROOT/benchmarks/machine_id.py" 2> "$OUT/machine-id.err" || echo unknown)
BASELINE_TIMER=$("$PYTHON" "$ROOT/benchmarks/machine_id.py" --timer 2>> "$OUT/machine-id.err" \
    || echo time.perf_counter)
step bench-baseline 60 "$PYTHON" -m pytest benchmarks -q -p no:cacheprovider "${SUITES[@]}" \
    --benchmark-storage="file://$OUT/baselines/$BASELINE_ID" --benchmark-save=gpu \
    --benchmark-timer="$BASELINE_TIMER" --benchmark-columns=min,median,max,rounds

# 7. compute-sanitizer memcheck on a small solve (the CUDA kernels' out-of-bounds accesses)
MEMCHECK=(env)
if [ "$DRY" = 0 ]; then
    MEMCHECK=(compute-sanitizer --tool memcheck --error-exitcode 9)
elif ! command -v compute-sanitizer > /dev/null; then
    echo "dry run: compute-sanitizer not found, the small solve runs without it" > "$OUT/memcheck.note"
fi
step memcheck 45 "${MEMCHECK[@]}" "$PYTHON" -c "
import torch, gpucops
from gpucops.synthetic import make_problem
p = make_problem($MEMCHECK_SIZE, 19, (1, 4, 16), seed=0, device='$DEVICE')
lab = gpucops.solve(p.node_costs, p.edge_costs, p.partitionable, p.distances, tile=4)
print('rounds', lab.info['rounds'], 'objective', lab.objective.tolist())
"

rm -rf "$OUT/.site" "$OUT/.cache"
tar -czf "$OUT.tar.gz" -C "$(dirname "$OUT")" "$(basename "$OUT")"
echo "results: $OUT (and $OUT.tar.gz)"
cat "$OUT/summary.md"
exit $STATUS
