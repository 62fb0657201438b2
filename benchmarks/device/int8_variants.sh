#!/usr/bin/env bash
# Why ORT INT8 gains what it gains: sgjnd_r50 (untrained, seed 0) U8S8 graphs made with different op types in float,
# timed side by side with ORT FP32 at 2, 8 and 16 threads, batch 16 (benchmarks/device/speed.py). Run from the
# repository root: `bash benchmarks/device/int8_variants.sh` (MODEL=sgjnd_tiny for a quick local try).
# Ran on the lent H200 machine on 2026-11-26 (benchmarks/results/2026-11-26-h200-host-vnni/README.md).
set +e
export PYTHONUNBUFFERED=1
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
PY=${PY:-python3}
W=${WORK:-/tmp/sgjnd-int8-variants}; rm -rf "$W"; mkdir -p "$W"
"$PY" benchmarks/device/gpu_check.py photos calibration "$W/calib" > /dev/null || exit 1
"$PY" benchmarks/device/gpu_check.py photos sample "$W/sample" > /dev/null || exit 1
"$PY" -m sgjnd.cli init "${MODEL:-sgjnd_r50}" --seed 0 -o "$W/r50.pt" > /dev/null || exit 1
"$PY" -m sgjnd.cli export "$W/r50.pt" -o "$W/m" > /dev/null 2>&1 || { echo "export failed"; exit 1; }
variant() {  # NAME [calibrate options]: calibrate (ranges cached after the first), keep the graph, print its kernels
    name=$1; shift
    timeout 120 "$PY" -m sgjnd.cli calibrate "$W/m" --images "$W/calib" --precision int8 --target ort-cpu \
        --num-patches 32 --no-report --quiet --holdout "$W/sample" "$@" > "$W/$name.log" 2>&1
    echo "$name (rc $?): $("$PY" -c "import json,sys; d=json.load(open(sys.argv[1]))['artifact']['details']
print(d['ort_cpu_kernels'])" "$W/m/encoder.int8-ort.onnx.json")"
    cp "$W/m/encoder.int8-ort.onnx" "$W/$name.onnx"
}
variant default
variant attention-quantised --quantize-attention
variant conv-only --exclude-op-types Add,MaxPool,MatMul,Gemm
for t in 2 8 16; do
    ROUNDS=5 timeout 150 "$PY" benchmarks/device/speed.py "$t" 16 "$W/m/encoder.onnx" "$W"/default.onnx \
        "$W"/attention-quantised.onnx "$W"/conv-only.onnx
done
