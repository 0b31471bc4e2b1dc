#!/usr/bin/env bash
# Issue 9's GPU measurements in one invocation, sized for <= 8 minutes of one H100:
#
#   1. step_speed, eager: resnet50 at 224/256 px, batch 4/16/64, fp32/bf16, nchw/channels_last;
#      xfer's step against the plain loop, and xfer as fit runs it against the fastest plain loop
#   2. step_speed, CUDA graphs: the bf16 + channels_last cases without and with a captured step
#      (setup time, steps/s, break-even steps)
#   3. packing: aggregate images/s for k = 1, 2, 4, 8 concurrent `xfer train`s, batch 4 and 16
#   4. seed_grid: the 54 configurations as 18 runs (2 epochs; 1 at n 10000), extrapolated,
#      at the k that step 3 recommends for batch 4: as 54 runs, and as 18 with epoch milestones
#   5. (if time is left) step_speed with torch.compile(mode="reduce-overhead") at 256 px, batch 4
#
# Each step's output goes to $OUT/<step>.txt (and .json); a step that would overrun the budget is
# cut short (SIGINT: trials are killed, what was printed stays) or skipped. Needs only python3 with
# torch, torchvision and numpy (no ray, mlflow, ptflops or scipy: stubs stand in, see packing.py).
#
#   OUT=DIR bash benchmarks/gpu_suite.sh    # OUT: the device tool sets it; else a new temp dir. SUITE_BUDGET_S 480
set -u
cd "$(dirname "$0")/.."
OUT="${OUT:-$(mktemp -d -t xfer-gpu-suite.XXXXXX)}"
BUDGET_S="${SUITE_BUDGET_S:-480}"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1  # a step cut short keeps every line it printed
mkdir -p "$OUT"
start=$(date +%s)

elapsed() { echo $(( $(date +%s) - start )); }

# step NAME LIMIT_S MIN_S CMD...: run CMD for at most LIMIT_S (less if the budget is shorter);
# skip it when fewer than MIN_S seconds of the budget are left.
step() {
    local name=$1 limit=$2 min=$3
    shift 3
    local left=$(( BUDGET_S - $(elapsed) ))
    if (( left < min )); then
        echo "== $name: skipped, ${left} s of the budget left (needs ${min})" | tee "$OUT/$name.txt"
        return
    fi
    (( limit > left )) && limit=$left
    echo "== $name (at most ${limit} s): $*"
    timeout --signal=INT --kill-after=15 "$limit" "$@" > "$OUT/$name.txt" 2>&1
    local rc=$?
    cat "$OUT/$name.txt"
    echo "== $name: exit ${rc}$( ((rc == 124)) && echo ' (timed out)'), $(elapsed) s into the suite"
}

{
    date -u
    nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv || true
    nproc
    "$PY" - <<'PY'
import sys
sys.path.insert(0, "benchmarks")
import numpy, torch, torchvision
from packing import missing_modules
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"numpy {numpy.__version__}, cuda {torch.cuda.is_available()} "
      f"{torch.cuda.get_device_name(0) if torch.cuda.is_available() else ''}; "
      f"stubbed in trials: {missing_modules() or 'nothing'}")
PY
} > "$OUT/environment.txt" 2>&1
cat "$OUT/environment.txt"

COMMON=(--device cuda --only resnet50 --steps 4 --rounds 3 --warmup 3)
step step_speed_eager 130 60 "$PY" benchmarks/step_speed.py "${COMMON[@]}" --graphs off \
    --json-out "$OUT/step_speed_eager.json"
step step_speed_graphs 70 40 "$PY" benchmarks/step_speed.py "${COMMON[@]}" --precisions bf16 \
    --layouts cl --graphs off,capture --json-out "$OUT/step_speed_graphs.json"
step packing 100 60 "$PY" benchmarks/packing.py --device cuda --ks 1,2,4,8 --batches 4,16 \
    --n 160 --epochs 6 --json-out "$OUT/packing.json"
K=$("$PY" -c "import json; print(json.load(open('$OUT/packing.json'))['recommended_k'].get('4', 4))" \
    2>/dev/null || echo 4)
step seed_grid 180 120 "$PY" benchmarks/seed_grid.py --device cuda --k "$K" --epochs-run 2,2,1 \
    --json-out "$OUT/seed_grid.json"
step step_speed_compile 120 100 "$PY" benchmarks/step_speed.py --device cuda --models resnet50 \
    --sizes 256 --batches 4 --precisions bf16 --layouts cl --graphs off,compile --steps 4 \
    --rounds 3 --warmup 3 --json-out "$OUT/step_speed_compile.json"
echo "suite done in $(elapsed) s; results in $OUT"
