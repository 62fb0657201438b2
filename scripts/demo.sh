#!/usr/bin/env bash
# The main job end to end on the bundled real photographs; every artifact lands in $OUT (default demo-output/).
set -euo pipefail
OUT=${OUT:-demo-output}
mkdir -p "$OUT"
step() { printf '\n=== %s\n' "$*"; }

step "environment"
sgjnd info

step "bundled photographs (scikit-image's data, public domain / CC0)"
python - "$OUT/photos" <<'PY'
import sys
from pathlib import Path
from sgjnd.samples import copy_sample_photos
for p in copy_sample_photos(Path(sys.argv[1])):
    print(p)
PY

CKPT="$OUT/sgjnd_r50_seed0.pt"
step "checkpoint: sgjnd_r50 with UNTRAINED weights from seed 0 (no trained SG-JND weights exist offline)"
[ -f "$CKPT" ] || sgjnd init sgjnd_r50 --seed 0 -o "$CKPT"

step "predict with the PyTorch reference (coarse-to-fine search, 4 patches per image)"
sgjnd predict "$OUT"/photos/* --backend torch --weights "$CKPT" --search coarse-to-fine --max-patches 4 \
    | tee "$OUT/predict-torch.txt"

printf '\nDemo artifacts are in %s/\n' "$OUT"
