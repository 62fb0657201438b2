#!/usr/bin/env bash
# The main job end to end on the bundled real photographs: export, calibrate, predict, compare, compress, benchmark.
# Every artifact lands in $OUT (default demo-output/). ONNX Runtime runs on the CPU where there is no GPU.
set -euo pipefail
OUT=${OUT:-demo-output}
mkdir -p "$OUT"
step() { printf '\n=== %s\n' "$*"; }

step "environment"
sgjnd info

step "photographs: the 5 bundled sample photos (held out) and calibration photos, from scikit-image's data"
python - "$OUT" <<'PY'
import sys
from pathlib import Path
from sgjnd.samples import calibration_photos, copy_photos, copy_sample_photos
out = Path(sys.argv[1])
for p in copy_sample_photos(out / "photos"):
    print("sample     ", p)
for p in copy_photos(calibration_photos(), out / "calibration-photos"):
    print("calibration", p)
PY
PHOTOS=("$OUT"/photos/*)

# The trained demo checkpoint when the repository ships one (see models/demo/MODEL_CARD.md); otherwise sgjnd_r50
# with UNTRAINED weights from seed 0, whose JNDs only show that the pipeline runs.
CKPT=${CKPT:-$(ls models/demo/*.pt 2>/dev/null | head -n 1 || true)}
if [ -z "$CKPT" ]; then
    CKPT="$OUT/sgjnd_r50_seed0.pt"
    step "checkpoint: sgjnd_r50 with UNTRAINED weights from seed 0 (no trained weights are shipped)"
    [ -f "$CKPT" ] || sgjnd init sgjnd_r50 --seed 0 -o "$CKPT"
else
    step "checkpoint: $CKPT (see models/demo/MODEL_CARD.md)"
fi
MODEL="$OUT/model"
SEARCH=(--search coarse-to-fine --max-patches 8)

step "predict with the PyTorch reference"
sgjnd predict "${PHOTOS[@]}" --backend torch --model "$CKPT" "${SEARCH[@]}" | tee "$OUT/predict-torch.txt"

if [ -f models/demo/heldout_labels.csv ] && [ "$CKPT" = "$(ls models/demo/*.pt | head -n 1)" ]; then
    step "the demo checkpoint's predictions beside the oracle's PROXY labels (Butteraugli, not human data)"
    cp models/demo/heldout_labels.csv models/demo/heldout_labels.csv.json "$OUT/"
    sgjnd evaluate "$CKPT" "$OUT/heldout_labels.csv" --backend torch "${SEARCH[@]}" -o "$OUT/evaluate-torch" --no-plots -q
    cat "$OUT/evaluate-torch/summary.md"
    printf '\n'
    column -s, -t < "$OUT/evaluate-torch/per_image.csv" 2>/dev/null || cat "$OUT/evaluate-torch/per_image.csv"
fi

step "export to ONNX (checked against PyTorch on real patches)"
sgjnd export "$CKPT" -o "$MODEL"

step "predict with ONNX Runtime FP32 from the model directory alone"
sgjnd predict "${PHOTOS[@]}" --backend onnxruntime --model "$MODEL" "${SEARCH[@]}" --json > "$OUT/predict-ort-fp32.jsonl"
sgjnd predict "${PHOTOS[@]}" --backend onnxruntime --model "$MODEL" "${SEARCH[@]}" --report "$OUT/report" \
    | tee "$OUT/predict-ort-fp32.txt"

step "compare ONNX Runtime FP32 with the PyTorch reference"
sgjnd compare "${PHOTOS[@]}" --ref "torch:$CKPT" --target "onnxruntime:$MODEL" "${SEARCH[@]}" \
    --json "$OUT/compare-torch-vs-ort.json"

step "calibrate INT8 for ONNX Runtime CPU (U8S8) and TensorRT (S8S8 QDQ) on the calibration photos"
# The demo checkpoint (EfficientNet-Lite0) keeps its stem and first six MBConv blocks in float: quantised, the
# high-resolution layers that see JPEG artefacts moved its JND by up to 15 QF (models/demo/MODEL_CARD.md, "INT8").
INT8_ARGS=(--num-patches 128)
if [ "$CKPT" = "$(ls models/demo/*.pt 2>/dev/null | head -n 1)" ]; then
    INT8_ARGS=(--num-patches 512 --patches-per-image 64
               --exclude-nodes "$(grep -v '^#' models/demo/int8_exclude_nodes.txt | paste -sd, -)")
fi
# calibrate exits 1 when INT8 misses its bound on the held-out photos; the graphs are written anyway.
sgjnd calibrate "$MODEL" --images "$OUT/calibration-photos" --precision int8 --target all \
    --holdout "$OUT/photos" "${INT8_ARGS[@]}" \
    || echo "(INT8 is outside a tolerance on the held-out photos: see the report above)"

step "predict with ONNX Runtime INT8 (U8S8)"
sgjnd predict "${PHOTOS[@]}" --backend onnxruntime --model "$MODEL" --precision int8-ort "${SEARCH[@]}" \
    | tee "$OUT/predict-ort-int8.txt"

step "compare ONNX Runtime INT8 with FP32"
sgjnd compare "${PHOTOS[@]}" --ref "onnxruntime:$MODEL" --target "onnxruntime:$MODEL:int8-ort" "${SEARCH[@]}" \
    --json "$OUT/compare-fp32-vs-int8.json" || echo "(INT8 is outside a tolerance: see the table above)"

step "NVIDIA's builder on every graph: TensorRT-RTX engines, FP32/FP16/INT8, built ahead of time without a GPU"
if python -c 'import tensorrt_rtx' 2>/dev/null; then
    sgjnd calibrate "$MODEL" --precision fp16 --holdout "$OUT/photos" --quiet > "$OUT/calibrate-fp16.txt" \
        || echo "(FP16 is outside a tolerance: see $OUT/calibrate-fp16.txt)"
    for precision in fp32 fp16 int8; do
        sgjnd build "$MODEL" --runtime tensorrt-rtx --precision "$precision"
    done
    ls -l "$MODEL"/*.rtx.engine
else
    echo "(TensorRT-RTX is not installed: pip install 'sgjnd[trt-rtx]')"
fi

step "compress the photos at the recommended quality (ONNX Runtime INT8) and compare with QF 90"
sgjnd compress "${PHOTOS[@]}" -o "$OUT/compressed" --overwrite --backend onnxruntime --model "$MODEL" \
    --precision int8-ort "${SEARCH[@]}" | tee "$OUT/compress.txt"

step "quick benchmark (tiny model): latency, end-to-end stages, drift against PyTorch"
sgjnd bench --profile quick -o "$OUT/bench"

printf '\nDemo artifacts are in %s/ (benchmark report: %s/bench/bench.md, plots: %s/bench/*.png)\n' "$OUT" "$OUT" "$OUT"
printf 'Visual JND report (open it in a browser; self-contained, works offline): %s\n' "$(realpath "$OUT/report/report.html")"
