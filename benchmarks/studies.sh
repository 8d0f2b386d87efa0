#!/usr/bin/env bash
# Train every model of the paper's three studies on one equal budget (benchmarks/studies_budget.yaml),
# resumably, one after the other on one core: the complete-frame + 500 px crop pool is rendered once (by the
# first run) and copied into every other run of the same recipe; study 2's complete-frame-only pool is
# rendered once for its run. Each run exports last.pt to OUT/ARCH[-no-crops]/model.onnx.
# Usage: benchmarks/studies.sh OUT [ARCH ...]   (default archs: plain7 and the paper's four)
# Then: benchmarks/architectures.py, benchmarks/crops_wilcoxon.sh, benchmarks/fov.sh (see their .md files).
set -euo pipefail
OUT=${1:?output folder}
shift || true
ARCHS=("$@")
[ ${#ARCHS[@]} -gt 0 ] || ARCHS=(plain7 plain7-no-crops mobilenetv3_small_100 mobilenetv3_large_100 resnet18 convnextv2_pico)
CLI=${CLI:-.venv/bin/celegans-autofocus}
CONFIG=${CONFIG:-benchmarks/studies_budget.yaml}
for name in "${ARCHS[@]}"; do
  arch=${name%-no-crops}
  flags=(--arch "$arch")
  pool_from="$OUT/plain7/pool.npz"
  if [ "$name" != "$arch" ]; then flags+=(--no-crops); pool_from=""; fi
  run="$OUT/$name"
  [ -f "$run/model.onnx" ] && continue
  mkdir -p "$run"
  # share the rendered pool (taken only if its recipe matches; else rendered anew)
  if [ -n "$pool_from" ] && [ -f "$pool_from" ] && [ ! -f "$run/pool.npz" ]; then cp "$pool_from" "$run/pool.npz"; fi
  resume=()
  [ -f "$run/last.pt" ] && resume=(--resume)
  $CLI train --config "$CONFIG" "${flags[@]}" --out "$run" "${resume[@]}" > "$run/summary.json" 2> "$run/train.log"
  $CLI export "$run/last.pt" "$run/model.onnx" > "$run/export.json" 2>> "$run/train.log"
done
