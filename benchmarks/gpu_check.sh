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
#      (benchmarks/batch_time.py): eager for every T, compiled at T = 64 and 256 (quick size);
#   5. `metapinn identify` on CUDA (not part of the pipeline): the Burgers shock case of
#      benchmarks/burgers_shock.py at 1 % noise (NOISE5="0.01 0" adds the clean data),
#      identify's defaults (three seeds);
#   6. meta-training's compiled graph-free steps on CUDA (what a long meta-train job runs:
#      Reptile, LEAP, pretraining, the hypernetwork) against the eager CPU meta-gradient and
#      validation loss (benchmarks/gpu_check.py --meta), float64.
#
# Each stage has its own time limit, logs to $OUT and goes on after a failure; the exit
# status counts the failed stages. The GPU image has PyTorch but not Snakemake, Hydra or
# netCDF4: run `bash benchmarks/gpu_wheels.sh` on a machine with the package index first,
# and carry .whl/ along (it is installed into /tmp/site here). metapinn itself runs from
# src/ without installing.
#
# Stages 2 and 3 check correctness, not speed, so when both are asked for they run side by
# side (stage 2's log is printed when it ends); stage 4 times, so it runs alone after them.
# The stage limits add up to ~9.5 min, to fit one 10-minute command:
#   run(command="bash benchmarks/gpu_check.sh", carry=[".whl"], timeout_s=600)
#
# Usage (repository root, GPU machine): OUT=<dir> bash benchmarks/gpu_check.sh [STAGE...]
# (stages 2 3 4 by default; the machine section always runs). Stages 5 and 6 run when asked
# for, e.g.:
#   run(command="bash benchmarks/gpu_check.sh 2 3 5 6", carry=[".whl"], timeout_s=600)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_check_out}  # the device tool sets $OUT
mkdir -p "$OUT"
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda}  # SKIP_WHEELS=1 DEVICE=cpu: a smoke test on a machine without a GPU
export PYTHONUNBUFFERED=1
stages_name=$(printf '%s' "$*" | tr -c 'A-Za-z0-9' _)  # the device tool returns plain names only
exec > >(tee "$OUT/gpu_check${stages_name:+_$stages_name}.log") 2>&1  # one log per stage list
start=$(date +%s)
stage() { echo; echo "== [$(($(date +%s) - start)) s] $*"; }
STAGES=" ${*:-2 3 4} "
want() { [[ $STAGES == *" $1 "* ]]; }
failed=0
run() {  # run <seconds> <command...>: a stage with a time limit; counts failures
    local limit=$1; shift
    timeout -k 10 "$limit" "$@"; local rc=$?  # -k: Snakemake waits on a TERM
    [ $rc -eq 0 ] || { echo "!! stage failed (exit $rc): $*"; failed=$((failed + 1)); }
}

if [ -z "${SKIP_WHEELS:-}" ] && ls .whl/*.whl >/dev/null 2>&1; then  # SKIP_WHEELS=1: use what is installed
    [ -d /tmp/site/snakemake ] || $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
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

if [ "$DEVICE" = cuda ] && ! $PY -c "import torch; assert torch.cuda.is_available()"; then
    echo "!! no CUDA device: nothing to check"; exit 99
fi

stage2() {
    stage "2. CUDA correctness of every adaptation path (vs the CPU)"
    run "${LIMIT2:-270}" $PY benchmarks/gpu_check.py --device "$DEVICE"
    echo "stage 2 failed: $failed"
}
if want 2 && want 3; then  # side by side: stage 2 to its own log, printed when it ends
    stage "2. started in the background (log: $OUT/stage2.log)"
    stage2 > "$OUT/stage2.log" 2>&1 &
    stage2_pid=$!
elif want 2; then
    stage2
fi

if want 3; then
    stage "3. tiny pipeline on $DEVICE"
    rm -rf results/tiny logs/tiny
    t0=$(date +%s)
    # the default profile runs one job per GPU (resources gpu=1); these jobs are small, so
    # GPU_JOBS of them share the card
    run "${LIMIT3:-270}" snakemake --cores "$(nproc)" --resources gpu="${GPU_JOBS:-8}" \
        --config experiment=tiny device="$DEVICE" --quiet rules \
        > "$OUT/tiny_snakemake.log" 2>&1
    echo "tiny pipeline on $DEVICE: $(($(date +%s) - t0)) s wall;" \
        "$(grep -c '^Finished' "$OUT/tiny_snakemake.log") jobs finished"
    grep -B2 -A12 "^Error\|Traceback" "$OUT/tiny_snakemake.log" | head -40
    for f in $(grep -rl "Traceback" logs/tiny 2>/dev/null | head -3); do  # failed jobs' logs
        echo "--- $f"; tail -25 "$f"
    done
    tar -czf "$OUT/tiny_logs.tgz" logs/tiny 2>/dev/null  # one file: at most 8 come back
    grep -rh "at once\|compiled in\|DIVERGED\|Error" logs/tiny 2>/dev/null \
        | sed 's/^[0-9: ,-]*//' | sort | uniq -c | sort -rn | head -20
    cat results/tiny/tables/speedup.md 2>/dev/null || ls -R results/tiny | head -40
    tar -czf "$OUT/tiny_tables.tgz" results/tiny/tables 2>/dev/null
fi

if [ -n "${stage2_pid:-}" ]; then
    wait "$stage2_pid"
    cat "$OUT/stage2.log"
    grep -q "stage 2 failed: 0" "$OUT/stage2.log" || failed=$((failed + 1))
fi

if want 4; then
    stage "4a. batched vs serial, eager, T = 1..256"
    run "${LIMIT4A:-120}" $PY benchmarks/batch_time.py --device "$DEVICE" --tasks 1 4 16 64 256 \
        --variants serial batched --serial-tasks 4 --steps 20 --repeats 3 --out "$OUT/eager"
    stage "4b. batched vs serial, compiled, T = 64 and 256, quick size"
    run "${LIMIT4B:-150}" $PY benchmarks/batch_time.py --device "$DEVICE" --tasks 64 256 --sizes quick \
        --variants serial_compiled batched_compiled --serial-tasks 4 --steps 20 --repeats 3 \
        --out "$OUT/compiled"
fi

if want 5; then
    stage "5. identify on $DEVICE: the Burgers shock case, identify's defaults"
    run "${LIMIT5:-240}" $PY benchmarks/burgers_shock.py --noise ${NOISE5:-0.01} \
        --set device="$DEVICE" ${IDENTIFY_SET:-} --out-dir "$OUT/identify"
    for f in "$OUT"/identify/identified_noise*_0.txt; do  # each command's log, its last lines
        [ -f "$f" ] && { echo "--- $f"; tail -8 "$f"; }
    done
    rm -f "$OUT"/identify/*.nc  # what comes back is limited to 8 files
fi

if want 6; then
    stage "6. meta-training's compiled graph-free steps on $DEVICE (vs the eager CPU)"
    run "${LIMIT6:-150}" $PY benchmarks/gpu_check.py --meta --device "$DEVICE"
fi

stage "done: $failed failed stage(s)"
exit "$failed"
