#!/usr/bin/env bash
# With vs without cropped stacks in training (the paper's section 3.2), one architecture (plain7, 96 px), one
# equal budget per pair, the same rendered scenes and offsets (seed 0). Both models of a pair are scored on
# the same held-out renders (benchmarks/heldout.py, seed 2024), then compared pairwise on absolute errors:
# Shapiro-Wilk on the differences, then Wilcoxon signed-rank. As in the paper (benchmarks/study_crops.yaml):
# "crops" = half complete frames, half 500 px crops around a worm; "no-crops" = complete frames only (the same
# scenes and offsets); scored on complete frames and 500 px crops.
# Usage: benchmarks/crops_wilcoxon.sh RUNS   (trains RUNS/crops/* resumably; prints the JSON)
set -euo pipefail
RUNS=${1:?output folder}
PY=${PY:-.venv/bin/python}
export CLI=${CLI:-"$PY -m celegans_autofocus.cli"} PYTHONPATH=${PYTHONPATH:-.}
benchmarks/studies.sh benchmarks/study_crops.yaml "$RUNS/crops" plain7 plain7-no-crops
$PY benchmarks/heldout.py paired "$RUNS/crops/plain7/model.onnx" "$RUNS/crops/plain7-no-crops/model.onnx" \
  --cache "$RUNS/heldout" --fov-px 500 0
