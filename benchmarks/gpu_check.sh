#!/usr/bin/env bash
# One prepared run for a lent GPU machine: everything a note needs about the CUDA path.
#
#   1. the machine (nvidia-smi, torch, the device);
#   2. CUDA correctness: every adaptation path (serial/batched × eager/compiled) against the
#      CPU, for every family (benchmarks/gpu_check.py; compiled paths for burgers only, to
#      save compile time);
#   3. the tiny pipeline with --config experiment=tiny device=cuda (adapt and tune-lr batched
#      by default on CUDA), its wall time and its speedup table;
#   4. batched vs serial adaptation up to T = 256 tasks, quick and paper sizes
#      (benchmarks/batch_time.py): eager for every T, compiled at T = 64 and 256.
#
# Each stage has its own time limit, logs to $OUT and goes on after a failure; the exit
# status counts the failed stages. The GPU image has PyTorch but not Snakemake, Hydra or
# netCDF4: run `bash benchmarks/gpu_wheels.sh` on a machine with the package index first,
# and carry .whl/ along (it is installed into /tmp/site here). metapinn itself runs from
# src/ without installing.
#
# Usage (repository root, GPU machine): OUT=<dir> bash benchmarks/gpu_check.sh [STAGE...]
# (stages 1 2 3 4 by default; the machine section always runs). All four take up to ~17 min,
# so with a 10-minute limit per command run them as two calls back to back:
#   run(command="bash benchmarks/gpu_check.sh 2 3", carry=[".whl"], timeout_s=600)
#   run(command="bash benchmarks/gpu_check.sh 4", carry=[".whl"], timeout_s=600)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check_out}  # the device tool sets $OUT
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # SKIP_WHEELS=1 DEVICE=cpu: a smoke test on a machine without a GPU
export PYTHONUNBUFFERED=1
exec > >(tee "$OUT/gpu_check.log") 2>&1
start=$(date +%s)
stage() { echo; echo "== [$(($(date +%s) - start)) s] $*"; }
STAGES=" ${*:-2 3 4} "
want() { [[ $STAGES == *" $1 "* ]]; }
failed=0
run() {  # run <seconds> <command...>: a stage with a time limit; counts failures
    local limit=$1; shift
    timeout "$limit" "$@"; local rc=$?
    [ $rc -eq 0 ] || { echo "!! stage failed (exit $rc): $*"; failed=$((failed + 1)); }
}

if [ -z "${SKIP_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then  # SKIP_WHEELS=1: use what is installed
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl || { echo "wheel install failed"; exit 1; }
    export PYTHONPATH=/tmp/site PATH=/tmp/site/bin:$PATH
fi
export PYTHONPATH=$PWD/src${PYTHONPATH:+:$PYTHONPATH}
mkdir -p /tmp/metapinn-bin  # the `metapinn` command of the pipeline's rules, from src/
printf '#!/bin/sh\nexec %s -m metapinn.cli "$@"\n' "$(command -v "$PY")" \
    > /tmp/metapinn-bin/metapinn
chmod +x /tmp/metapinn-bin/metapinn
export PATH=/tmp/metapinn-bin:$PATH

stage "1. machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
$PY -c "import torch, sys; print('python', sys.version.split()[0], 'torch', torch.__version__,
'cuda', torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else 'NO CUDA')"
nproc

if want 2; then
    stage "2. CUDA correctness of every adaptation path (vs the CPU)"
    run 240 $PY benchmarks/gpu_check.py --device "$DEVICE"
fi

if want 3; then
    stage "3. tiny pipeline on $DEVICE"
    rm -rf results/tiny logs/tiny
    t0=$(date +%s)
    run 300 snakemake --cores "$(nproc)" --config experiment=tiny device="$DEVICE" --quiet rules
    echo "tiny pipeline on $DEVICE: $(($(date +%s) - t0)) s wall"
    grep -rh "at once\|compiled in\|DIVERGED\|Error" logs/tiny 2>/dev/null \
        | sed 's/^[0-9: ,-]*//' | sort | uniq -c | sort -rn | head -20
    cat results/tiny/tables/speedup.md 2>/dev/null || ls -R results/tiny | head -40
    cp -r results/tiny/tables "$OUT/tiny_tables" 2>/dev/null
fi

if want 4; then
    stage "4a. batched vs serial, eager, T = 1..256"
    run 240 $PY benchmarks/batch_time.py --device "$DEVICE" --tasks 1 4 16 64 256 \
        --variants serial batched --serial-tasks 4 --steps 20 --repeats 3 --out "$OUT/eager"
    stage "4b. batched vs serial, compiled, T = 64 and 256"
    run 300 $PY benchmarks/batch_time.py --device "$DEVICE" --tasks 64 256 \
        --variants serial_compiled batched_compiled --serial-tasks 4 --steps 20 --repeats 3 \
        --out "$OUT/compiled"
fi

stage "done: $failed failed stage(s)"
exit "$failed"
