#!/usr/bin/env bash
# With vs without cropped stacks in training (the paper's section 3.2), one architecture (plain7, 96 px), the
# same budget for both models (benchmarks/study_crops.yaml: 2000 steps; and cut to 5 epochs, 1250 steps), the
# same rendered scenes and offsets (seed 0). Both models of a pair are scored on
# the same held-out renders (benchmarks/heldout.py, seed 2024), then compared pairwise on absolute errors:
# Shapiro-Wilk on the differences, then Wilcoxon signed-rank. As in the paper (benchmarks/study_crops.yaml):
# "crops" = half complete frames, half 500 px crops around a worm; "no-crops" = complete frames only (the same
# scenes and offsets); scored on complete frames and 500 px crops.
# Usage: benchmarks/crops_wilcoxon.sh RUNS   (trains RUNS/crops8/*, RUNS/crops/* resumably; prints 2 JSONs)
set -euo pipefail
RUNS=${1:?output folder}
PY=${PY:-.venv/bin/python}
export CLI=${CLI:-"$PY -m celegans_autofocus.cli"} PYTHONPATH=${PYTHONPATH:-.}
benchmarks/studies.sh benchmarks/study_crops.yaml "$RUNS/crops8" plain7 plain7-no-crops
TRAIN_FLAGS="--epochs 5" benchmarks/studies.sh benchmarks/study_crops.yaml "$RUNS/crops" plain7 plain7-no-crops
for run in crops8 crops; do
  $PY benchmarks/heldout.py paired "$RUNS/$run/plain7/model.onnx" "$RUNS/$run/plain7-no-crops/model.onnx" \
    --cache "$RUNS/heldout" --fov-px 500 0
done
