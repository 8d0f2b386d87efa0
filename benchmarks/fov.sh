#!/usr/bin/env bash
# Field-of-view table of the bundled default model (the paper's Table 5): the same held-out full
# frames, cropped around the worm recorded in stack.yaml at 500, 750, 1000 and 1250 px, and uncropped.
# Usage: benchmarks/fov.sh VAL [MODEL] [OUT]
set -euo pipefail
VAL=${1:?labelled validation dataset}
MODEL=${2:-models/default.onnx}
OUT=${3:-runs/bench_fov}
CLI=${CLI:-.venv/bin/celegans-autofocus}
$CLI evaluate "$MODEL" --dataset "$VAL" --fov-px 500 750 1000 1250 --out "$OUT"
