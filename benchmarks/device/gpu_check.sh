#!/usr/bin/env bash
# Device check for sgjnd (not part of the package); see benchmarks/device/README.md. Run from the repository root:
#     bash benchmarks/device/gpu_check.sh
# Steps, each time-boxed with `timeout`; a failing or hanging step is recorded and the rest go on:
#   1 probe   GPU/driver, CPU model and int8 flags (VNNI/AMX), library versions, ORT providers, CUDA, tensorrt
#   2 prep    sgjnd init sgjnd_r50 --seed 0 (UNTRAINED), sgjnd export, sgjnd calibrate --precision int8 --target ort-cpu
#             on scikit-image's calibration photos (sgjnd.samples; the step fails clearly without scikit-image)
#   3 cpu     encoder ms/patch, batch 16 and 1, intra-op threads 16 and 2: torch eager FP32, ORT FP32, ORT INT8 (U8S8)
#   4 gpu     encoder ms/patch on CUDA, batch 16 and 64: sgjnd torch backend FP32; raw torch FP32/strict/FP16/BF16
#   5 parity  demo checkpoint, torch CPU vs torch CUDA: tensors on fixed patches + JND QF of the 5 sample photos
#             (full search, max 16 patches per photo, the same PredictConfig on both devices)
#   6 e2e     sgjnd_r50 predictor per 1920x1080 photo and strategy: torch CUDA device-resident rounds (exact JPEG on
#             the GPU, uint8 input) vs host rounds (OpenCV; uint8 and float32 input), ORT CUDA (onnxruntime-gpu only),
#             ORT CPU; stages, host->device bytes, JND
# Writes into $OUT (default /tmp/sgjnd-gpu-check-out): log.txt summary.txt steps.tsv probe.txt cpu_int8.json
# gpu_torch.json parity.json; prints a short summary at the end.
# Environment: QUICK=1 (tiny settings for a local dry run), PY (python, default python3), WORK (scratch folder),
# TOTAL_BUDGET (seconds for all steps, default 480), STEPS (subset, e.g. "probe cpu"), DRY_DEVICE=cpu (without CUDA,
# exercise the GPU steps' code on the CPU, clearly labelled; local test only), BLOCK_MODULES (e.g. "onnxslim onnxsim":
# make them unimportable, to test the remote's environment locally).
set +e
export PYTHONUNBUFFERED=1
cd "$(dirname "${BASH_SOURCE[0]}")/../.." || exit 1
ROOT=$PWD
OUT=${OUT:-/tmp/sgjnd-gpu-check-out}
mkdir -p "$OUT"
PY=${PY:-python3}
WORK=${WORK:-/tmp/sgjnd-gpu-check}
rm -rf "$WORK"
mkdir -p "$WORK"
export PYTHONPATH=$ROOT${PYTHONPATH:+:$PYTHONPATH}
if [ -n "${BLOCK_MODULES:-}" ]; then
    for m in $BLOCK_MODULES; do
        mkdir -p "$WORK/block/$m"
        echo "raise ImportError('$m blocked by gpu_check.sh BLOCK_MODULES')" > "$WORK/block/$m/__init__.py"
    done
    export PYTHONPATH=$WORK/block:$PYTHONPATH
fi
QUICK=${QUICK:-0}
STEPS=${STEPS:-"probe prep cpu gpu parity e2e"}
NCPU=$(nproc 2>/dev/null || echo 2)
H=$ROOT/benchmarks/device/gpu_check.py
LOG=$OUT/log.txt
SUMMARY=$OUT/summary.txt
STEPTSV=$OUT/steps.tsv
: > "$LOG"; : > "$SUMMARY"; printf 'step\tstatus\trc\tseconds\n' > "$STEPTSV"
T0=$(date +%s)

CKPT=$WORK/r50.pt
MODEL_DIR=$WORK/model
DEMO=$ROOT/models/demo/sgjnd_effl0_proxy.pt
if [ "$QUICK" = 1 ]; then
    TOTAL_BUDGET=${TOTAL_BUDGET:-900}
    CAL_PATCHES=8; CPU_THREADS=${CPU_THREADS:-2}; CPU_BATCHES=2,1; CPU_ROUNDS=2; CPU_MIN_ROUNDS=2; CPU_MAX_S=5
    GPU_BATCHES=1; GPU_ITERS=2; GPU_MIN_ITERS=1; GPU_WARMUP=1; GPU_MAX_S=1
    PAR_SEARCH=coarse-to-fine; PAR_MAXP=2; PAR_PHOTOS=2; PAR_TP=1
    E2E_STRATEGIES=coarse-to-fine; E2E_MAXP=2; E2E_PHOTOS=1
else
    TOTAL_BUDGET=${TOTAL_BUDGET:-480}
    T_HI=16; [ "$NCPU" -lt 16 ] && T_HI=$NCPU
    CAL_PATCHES=32; CPU_THREADS=${CPU_THREADS:-$T_HI,2}; CPU_BATCHES=16,1; CPU_ROUNDS=6; CPU_MIN_ROUNDS=3; CPU_MAX_S=14
    GPU_BATCHES=16,64; GPU_ITERS=30; GPU_MIN_ITERS=3; GPU_WARMUP=3; GPU_MAX_S=4
    PAR_SEARCH=full; PAR_MAXP=16; PAR_PHOTOS=5; PAR_TP=4
    E2E_STRATEGIES=coarse-to-fine,full; E2E_MAXP=32; E2E_PHOTOS=2
fi

say() { echo "$*" | tee -a "$LOG" "$SUMMARY"; }
want() { case " $STEPS " in *" $1 "*) return 0;; esac; return 1; }

# step NAME WANT_S RESERVE_S SHOW CMD... : runs CMD under `timeout`, at most WANT_S seconds and never into the
# RESERVE_S seconds kept for later steps; SHOW = all (print its output) or a number of last lines to print.
step() {
    local name=$1 wanted=$2 reserve=$3 show=$4
    shift 4
    local now left to rc t1 dt status
    now=$(date +%s)
    left=$((TOTAL_BUDGET - (now - T0) - reserve))
    to=$wanted
    [ "$left" -lt "$to" ] && to=$left
    if [ "$to" -lt 15 ]; then
        say "=== [$name] SKIPPED: time budget spent (${left}s left for it)"
        printf '%s\tskipped-budget\t-\t0\n' "$name" >> "$STEPTSV"
        return 99
    fi
    export STEP_TIMEOUT=$to
    echo "=== [$name] $(date +%T) timeout ${to}s" | tee -a "$LOG"
    echo "\$ $*" >> "$LOG"
    t1=$(date +%s.%N)
    timeout -k 10 "$to" "$@" > "$WORK/$name.out" 2>&1
    rc=$?
    dt=$(awk -v a="$t1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.1f", b-a}')
    cat "$WORK/$name.out" >> "$LOG"
    # progress bars and library chatter stay in log.txt only
    grep -v -e '\[#*\.*\]' -e 'UserWarning' -e 'warnings.warn' "$WORK/$name.out" > "$WORK/$name.short"
    if [ "$rc" -ne 0 ] && [ "$show" != all ]; then show=25; fi
    if [ "$show" = all ]; then cat "$WORK/$name.short"; else tail -n "$show" "$WORK/$name.short"; fi
    case $rc in
        0) status=ok;;
        124|137) status=TIMEOUT;;
        3) status=skipped;;
        *) status=FAILED;;
    esac
    say "=== [$name] $status (rc $rc) in ${dt}s"
    printf '%s\t%s\t%s\t%s\n' "$name" "$status" "$rc" "$dt" >> "$STEPTSV"
    return "$rc"
}

say "sgjnd device check: $(date -u +%FT%TZ) host ${HOSTNAME:-?} nproc $NCPU QUICK=$QUICK budget ${TOTAL_BUDGET}s"
say "repo $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo '?') $(git -C "$ROOT" status --porcelain 2>/dev/null | wc -l) changed file(s); python: $(command -v "$PY")"

# -- 1. probe ---------------------------------------------------------------------------------------------------------
if want probe; then
    t1=$(date +%s)
    P=$OUT/probe.txt
    {
        echo "## nvidia-smi -L"; timeout 20 nvidia-smi -L 2>&1 || echo "(nvidia-smi failed or absent: rc $?)"
        echo "## nvidia-smi query"
        timeout 20 nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,power.limit,compute_cap \
            --format=csv 2>&1 || echo "(failed: rc $?)"
        echo "## lscpu"; timeout 10 lscpu 2>&1 | grep -v -i '^flags'
        echo "## int8-relevant CPU flags (from /proc/cpuinfo)"
        grep -m1 -o -w -E 'avx2|fma|avx512f|avx512bw|avx512_vnni|avx_vnni|avx512_bf16|amx_tile|amx_int8|amx_bf16' \
            /proc/cpuinfo | sort -u | tr '\n' ' '; echo
        echo "## python3 -c 'import tensorrt'"
        timeout 30 "$PY" -c '
try:
    import tensorrt; print("tensorrt", tensorrt.__version__)
except Exception as e:
    print("tensorrt ABSENT:", type(e).__name__, e)' 2>&1 | tail -n 1
        echo "## free -g"; timeout 5 free -g 2>&1
    } > "$P" 2>&1
    echo "## python probe (json)" >> "$P"
    timeout 90 "$PY" "$H" probe --out "$WORK/probe.json" --summary "$SUMMARY" 2>&1 | tee -a "$LOG" | grep '^probe:'
    cat "$WORK/probe.json" >> "$P" 2>/dev/null
    echo "## sgjnd info" >> "$P"
    timeout 60 "$PY" -m sgjnd.cli info >> "$P" 2>&1 || echo "(sgjnd info: rc $?)" >> "$P"
    say "probe: GPU: $(grep -m1 '^GPU 0' "$P" || echo none) | CPU int8 flags: $(sed -n '/int8-relevant/{n;p}' "$P")"
    say "probe: $(sed -n "/import tensorrt/{n;p}" "$P" | tail -c 160)"
    cat "$P" >> "$LOG"
    printf 'probe\tdone\t-\t%s\n' "$(( $(date +%s) - t1 ))" >> "$STEPTSV"
fi

# -- 2. model directory: init, export, INT8 (ORT CPU) ------------------------------------------------------------------
if want prep || want cpu || want gpu || want e2e; then
    step init 60 200 3 "$PY" -m sgjnd.cli init sgjnd_r50 --seed 0 -o "$CKPT"
fi
if want prep || want cpu || want e2e; then
    step export 150 190 15 "$PY" -m sgjnd.cli export "$CKPT" -o "$MODEL_DIR" ||
        step export-dynamo 150 190 15 "$PY" -m sgjnd.cli export "$CKPT" -o "$MODEL_DIR" --exporter dynamo --opset 18
    step photos 30 190 2 "$PY" "$H" photos calibration "$WORK/calib"
    step calibrate 120 180 12 "$PY" -m sgjnd.cli calibrate "$MODEL_DIR" --images "$WORK/calib" --precision int8 \
        --target ort-cpu --num-patches "$CAL_PATCHES" --no-report --threads "$NCPU" --quiet
    ls -la "$MODEL_DIR" >> "$LOG" 2>&1
fi

# -- 3. CPU: torch eager FP32 vs ORT FP32 vs ORT INT8 ----------------------------------------------------------------
if want cpu; then
    step cpu 150 130 0 "$PY" "$H" cpu --model-dir "$MODEL_DIR" --ckpt "$CKPT" --threads "$CPU_THREADS" \
        --batches "$CPU_BATCHES" --rounds "$CPU_ROUNDS" --min-rounds "$CPU_MIN_ROUNDS" --max-seconds "$CPU_MAX_S" \
        --out "$OUT/cpu_int8.json" --summary "$SUMMARY"
fi

# -- 4. GPU: sgjnd torch backend + raw torch --------------------------------------------------------------------------
if want gpu; then
    step gpu 90 80 0 "$PY" "$H" gpu --ckpt "$CKPT" --batches "$GPU_BATCHES" --iters "$GPU_ITERS" --min-iters "$GPU_MIN_ITERS" \
        --warmup "$GPU_WARMUP" --max-seconds "$GPU_MAX_S" --out "$OUT/gpu_torch.json" --summary "$SUMMARY"
fi

# -- 5. parity: torch CPU vs torch CUDA on the demo checkpoint ---------------------------------------------------------
if want parity; then
    step parity 200 150 0 "$PY" "$H" parity --ckpt "$DEMO" --search "$PAR_SEARCH" --max-patches "$PAR_MAXP" \
        --photos "$PAR_PHOTOS" --tensor-patches "$PAR_TP" --out "$OUT/parity.json" --summary "$SUMMARY"
fi

# -- 6. e2e: the predictor per 1080p photo, device-resident rounds vs host rounds ----------------------------------------
if want e2e; then
    step e2e 240 0 0 "$PY" "$H" e2e --ckpt "$CKPT" --model-dir "$MODEL_DIR" --strategies "$E2E_STRATEGIES" \
        --max-patches "$E2E_MAXP" --photos "$E2E_PHOTOS" --out "$OUT/e2e.json" --summary "$SUMMARY"
fi

echo
echo "===================== SUMMARY ($(( $(date +%s) - T0 ))s in all) ====================="
cat "$SUMMARY"
echo "--- steps"
column -t "$STEPTSV" 2>/dev/null || cat "$STEPTSV"
echo "--- files in \$OUT: $(cd "$OUT" && ls | tr '\n' ' ')"
exit 0
