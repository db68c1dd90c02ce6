#!/usr/bin/env bash
# What a session lent a GPU runs there, in one call of the device tool
# (issues 5 and 9): the CUDA tests on the real GPU (no simulator, larger
# shapes) and the CUDA benchmarks (pytest-benchmark, beside PyTorch CUDA and a
# device-to-device copy), from the repository root:
#
#     bash bench/gpu_session.sh            # writes into $OUT (the device tool's)
#
# First run on an H200 in stop 39 (reports/throughput-cuda-h200.*,
# reports/cuda-h200-tests.log). Each step's log and
# exit status go to $OUT (at most 8 files come back from a device call), and
# a step that fails does not stop the next. The benchmark report comes back
# as throughput-cuda-h200.md and .json (no plots there: too many files); to
# commit it with its plots, render it again here from the JSON it came with:
#
#     fastloss bench --input <files_at>/throughput-cuda-h200.json --machine cuda-h200
#
# The device image (see the device tool's KINDS.md) already has numba,
# numba-cuda, NumPy, mpmath, PyTorch with CUDA, CuPy, pytest,
# pytest-benchmark, hypothesis, rich and matplotlib; fastloss runs from the
# checkout (PYTHONPATH), not installed. But the image's numba-cuda does not
# import beside its NumPy 2.5 (below): fetch a NumPy 2.4 wheel for Python
# 3.12 here first, keep .whl out of git (.git/info/exclude) and carry it:
#
#     python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 -d .whl numpy==2.4.6
#
# Time limits per step (seconds):
# TEST_S (default 240), FOCAL_S (default 120) and BENCH_S (default 300); one
# device call may run 600.
set -uo pipefail

out=${OUT:-$(mktemp -d)}
# Python wheels carried in .whl (the device tool's `carry`), for packages
# that must differ from the image's: its numba-cuda 0.30.4 fails to import
# with its NumPy 2.5 (numba_cuda's arrayobj overloads np.row_stack, removed
# in NumPy 2.5), so a session carries numpy 2.4.6.
if compgen -G ".whl/*.whl" > /dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl && export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
py=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
unset NUMBA_ENABLE_CUDASIM
status="$out/status.txt"
: > "$status"

step() {  # step NAME SECONDS COMMAND...: run, log to $out/NAME.log, record the exit status
    local name=$1 secs=$2
    shift 2
    echo "== $name: $*"
    timeout "$secs" "$@" > "$out/$name.log" 2>&1
    local rc=$?
    echo "$name rc=$rc" | tee -a "$status"
    tail -n 15 "$out/$name.log"
}

{
    nvidia-smi
    "$py" - <<'EOF'
import sys
import numba
import numpy
from numba import cuda

print(sys.version)
print("numba", numba.__version__, "numpy", numpy.__version__)
try:
    import numba_cuda
    print("numba-cuda", numba_cuda.__version__)
except ImportError:
    print("numba-cuda: not importable as numba_cuda")
try:
    import torch
    print("torch", torch.__version__, "cuda", torch.cuda.is_available())
except ImportError:
    print("torch: none")
cuda.detect()
EOF
} > "$out/env.log" 2>&1
echo "env rc=$?" | tee -a "$status"
tail -n 12 "$out/env.log"

# the CUDA tests without the simulator (tests/conftest.py: FASTLOSS_TEST_GPU=1),
# and the PyTorch integration with CUDA tensors
step tests "${TEST_S:-240}" env FASTLOSS_TEST_GPU=1 "$py" -m pytest -q -rfEs -p no:cacheprovider \
    -n "${TEST_WORKERS:-8}" --tb=short --durations=15 \
    tests/test_cuda.py tests/test_cuda_boxes.py tests/test_cuda_rowblock.py \
    tests/test_cuda_rowwarp.py tests/test_cuda_rowwise.py tests/test_torch.py

# the float32 sigmoid_focal discrepancy of stop 39 (the one CUDA test that
# failed there): which intermediate first differs from the CPU
step focal "${FOCAL_S:-120}" "$py" bench/gpu_focal_check.py

# the CUDA benchmarks: 2^28-element elementwise losses and the cross_entropy
# shapes of issue 5, beside PyTorch CUDA and the device-to-device copy
step bench "${BENCH_S:-300}" "$py" -m fastloss.cli bench --backend cuda --peers torch \
    --machine cuda-h200 --out-dir "$out" --no-plots --budget 0.5 \
    --suite "${BENCH_SUITES:-elementwise,multiclass}"

cat "$status"
