#!/usr/bin/env bash
# Device check of HaiScale's CUDA staging on a fresh GPU machine holding this repo (about 5-8 min):
# build hfreduce._C and hfreduce._cuda in place with nvcc, run the gpu tests, run the benchmark.
# Writes summary.txt, env.txt, build.log, pytest.log, bench.txt and bench.json to $OUT (default
# test-artifacts/gpu-check). Exit status: 0 when the build, the tests and the benchmark all passed.
#
#   OUT=/tmp/out bash scripts/gpu_check.sh          # FIREFLYER_CUDA_ARCH=sm_90 unless set
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/test-artifacts/gpu-check}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export FIREFLYER_CUDA=1 FIREFLYER_CUDA_ARCH=${FIREFLYER_CUDA_ARCH:-sm_90}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export HFREDUCE_SHM_HEAP_BYTES=${HFREDUCE_SHM_HEAP_BYTES:-2147483648}
rc=0
say() { echo "[gpu_check $(date +%T)] $*" | tee -a "$OUT/summary.txt"; }
: >"$OUT/summary.txt"

{
  nvidia-smi -L
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
  nvcc --version | tail -2
  "$PY" -c 'import sys, torch; print(sys.version); print("torch", torch.__version__, torch.version.cuda, torch.cuda.is_available())'
  command -v mpirun || echo "no mpirun: the benchmark spawns its ranks itself"
  ulimit -l
} >"$OUT/env.txt" 2>&1
say "env: $(head -1 "$OUT/env.txt")"

say "build (FIREFLYER_CUDA=1 FIREFLYER_CUDA_ARCH=$FIREFLYER_CUDA_ARCH)"
if timeout 300 "$PY" setup.py build_ext --inplace -j 4 >"$OUT/build.log" 2>&1; then
  say "build ok: $(ls hfreduce/_cuda*.so 2>/dev/null | tr '\n' ' ')"
else
  say "BUILD FAILED (tail of build.log follows)"
  tail -30 "$OUT/build.log" | tee -a "$OUT/summary.txt"
  exit 1
fi

say "gpu tests"
if timeout 240 "$PY" -m pytest -q -p no:cacheprovider -o timeout=150 -rA tests/haiscale/test_cuda_staging.py \
  >"$OUT/pytest.log" 2>&1; then
  say "tests ok: $(tail -1 "$OUT/pytest.log")"
else
  rc=1
  say "TESTS FAILED: $(tail -1 "$OUT/pytest.log")"
  grep -E "^(FAILED|ERROR)" "$OUT/pytest.log" | head -20 | tee -a "$OUT/summary.txt"
fi

say "benchmark"
if timeout 200 "$PY" -m fireflyer.haiscale.cuda_bench --sizes-mb 4,64,256 --iters 5 --np 2 --timeout-s 180 --json \
  >"$OUT/bench.json" 2>"$OUT/bench.err"; then
  "$PY" - "$OUT/bench.json" >"$OUT/bench.txt" <<'PYEOF'
import json, sys
from fireflyer.haiscale.cuda_bench import _fmt_allreduce, _fmt_copies
res = json.load(open(sys.argv[1]))
print(_fmt_copies(res["copies"]))
if res["allreduce"]:
    print()
    print(_fmt_allreduce(res["allreduce"]))
PYEOF
  cat "$OUT/bench.txt" | tee -a "$OUT/summary.txt"
else
  rc=1
  say "BENCHMARK FAILED"
  tail -30 "$OUT/bench.err" | tee -a "$OUT/summary.txt"
fi
say "done, rc=$rc"
exit $rc
