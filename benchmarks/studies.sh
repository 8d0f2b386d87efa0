#!/usr/bin/env bash
# Train the models of one of the paper's studies on one equal budget (CONFIG), resumably, one after the other:
# a NAME is a timm architecture or plain7, with the suffix -no-crops for complete frames only. The rendered pool
# is shared: a run without one gets a copy of a sibling's (same crops setting; training takes it only if its
# recipe matches, else renders anew). Each run is exported from its last checkpoint to OUT/NAME/model.onnx.
# Usage: [TRAIN_FLAGS="--epochs 5"] benchmarks/studies.sh CONFIG OUT NAME...   (TRAIN_FLAGS: options after CONFIG)
#   study 1: benchmarks/studies.sh benchmarks/study_archs.yaml RUNS/archs plain7 mobilenetv3_small_100 \
#            convnextv2_pico resnet18 [mobilenetv3_large_100]
#   study 2: benchmarks/studies.sh benchmarks/study_crops.yaml RUNS/crops8 plain7 plain7-no-crops
set -euo pipefail
CONFIG=${1:?budget config (benchmarks/study_*.yaml)}
OUT=${2:?output folder}
shift 2
CLI=${CLI:-.venv/bin/celegans-autofocus}
view_kind() { if [ "${1%-no-crops}" == "$1" ]; then echo crops; else echo full; fi; }
for name in "$@"; do
  arch=${name%-no-crops}
  flags=(--arch "$arch")
  [ "$name" != "$arch" ] && flags+=(--no-crops)
  run="$OUT/$name"
  [ -f "$run/model.onnx" ] && continue
  mkdir -p "$run"
  if [ ! -f "$run/pool.npz" ]; then
    for other in "$OUT"/*/pool.npz; do
      [ -f "$other" ] || continue
      sibling=$(basename "$(dirname "$other")")
      if [ "$(view_kind "$sibling")" == "$(view_kind "$name")" ]; then
        cp "$other" "$run/pool.npz"
        break
      fi
    done
  fi
  resume=()
  [ -f "$run/last.pt" ] && resume=(--resume)
  # shellcheck disable=SC2086
  $CLI train --config "$CONFIG" "${flags[@]}" ${TRAIN_FLAGS:-} --out "$run" "${resume[@]}" > "$run/summary.json" 2> "$run/train.log"
  $CLI export "$run/last.pt" "$run/model.onnx" > "$run/export.json" 2>> "$run/train.log"
done
