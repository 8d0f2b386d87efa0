#!/usr/bin/env bash
# With vs without cropped stacks in training (the paper's section 3.2), one architecture, equal budget:
# the same on-the-fly synthetic scenes (same seed); "crops" renders 3/4 of its frames as crops around
# a worm, "no-crops" renders full frames only. Both are evaluated on the same held-out images (VAL),
# then compared pairwise on absolute errors: Shapiro-Wilk on the differences, Wilcoxon signed-rank.
# Usage: benchmarks/crops_wilcoxon.sh VAL OUT   (VAL: labelled held-out dataset with full and crop stacks)
set -euo pipefail
VAL=${1:?labelled validation dataset}
OUT=${2:-runs/bench_crops}
CLI=${CLI:-.venv/bin/celegans-autofocus}
mkdir -p "$OUT"
COMMON=(--arch mobilenetv3_small_100 --input-px 128 --epochs 4 --batch-size 16 --lr 0.001 --loss huber
        --val-fraction 1 --synthetic-train 512 --synthetic-refresh 0.5 --synthetic-offsets-per-view 8
        --synthetic-range-steps 250 --synthetic-near-fraction 0.3 --synthetic-crop-fraction 0.75
        --synthetic-fov-px 500 750 1000 1250 --max-val-samples 400 --seed 0 --device cpu --threads 1)
for mode in crops no-crops; do
  if [ ! -f "$OUT/$mode/model.onnx" ]; then
    $CLI train "$VAL" "${COMMON[@]}" --"$mode" --out "$OUT/$mode" --export "$OUT/$mode/model.onnx" \
      $( [ -f "$OUT/$mode/last.pt" ] && echo --resume ) > "$OUT-$mode.json"
  fi
done
$CLI evaluate "$OUT/crops/model.onnx" "$OUT/no-crops/model.onnx" --dataset "$VAL" --max-images 400 \
  --fov-px 500 --out "$OUT/eval"
