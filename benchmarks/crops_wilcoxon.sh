#!/usr/bin/env bash
# With vs without cropped stacks in training (the paper's section 3.2), one architecture (plain7, 96 px), one
# equal budget per pair, the same rendered scenes and offsets (seed 0). Both models of a pair are scored on
# the same held-out renders (benchmarks/heldout.py, seed 2024), then compared pairwise on absolute errors:
# Shapiro-Wilk on the differences, then Wilcoxon signed-rank.
#  1. as in the paper (benchmarks/study_crops.yaml): "crops" = half complete frames, half 500 px crops around a
#     worm; "no-crops" = complete frames only; scored on complete frames and 500 px crops.
#  2. at a field of view this budget learns (benchmarks/study_wide*.yaml): 1000 px windows stand in for the
#     complete frames: "crops" = half 1000 px windows, half 500 px crops; "no-crops" = 1000 px windows only;
#     scored on 1000 px windows and 500 px crops.
# Usage: benchmarks/crops_wilcoxon.sh RUNS   (trains RUNS/crops/*, RUNS/wide/*/plain7 resumably; prints 2 JSONs)
set -euo pipefail
RUNS=${1:?output folder}
PY=${PY:-.venv/bin/python}
export CLI=${CLI:-"$PY -m celegans_autofocus.cli"} PYTHONPATH=${PYTHONPATH:-.}
benchmarks/studies.sh benchmarks/study_crops.yaml "$RUNS/crops" plain7 plain7-no-crops
benchmarks/studies.sh benchmarks/study_wide_crops.yaml "$RUNS/wide/crops" plain7
benchmarks/studies.sh benchmarks/study_wide.yaml "$RUNS/wide/no-crops" plain7
$PY benchmarks/heldout.py paired "$RUNS/crops/plain7/model.onnx" "$RUNS/crops/plain7-no-crops/model.onnx" \
  --cache "$RUNS/heldout" --fov-px 500 0
$PY benchmarks/heldout.py paired "$RUNS/wide/crops/plain7/model.onnx" "$RUNS/wide/no-crops/plain7/model.onnx" \
  --cache "$RUNS/heldout" --fov-px 500 1000
