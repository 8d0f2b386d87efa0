#!/usr/bin/env bash
# Field-of-view table (the paper's Table 5): the models of the studies (trained by crops_wilcoxon.sh and by
# studies.sh with benchmarks/study_archs.yaml) scored on held-out renders of the same scenes and offsets
# (benchmarks/heldout.py, seed 2024) cropped at 500, 750, 1000 and 1250 px around a worm, and complete frames.
# Usage: benchmarks/fov.sh RUNS [MODEL.onnx ...]   (default: every model of RUNS/crops8, RUNS/crops, RUNS/archs)
set -euo pipefail
RUNS=${1:?folder of the studies runs}
shift
PY=${PY:-.venv/bin/python}
MODELS=("$@")
[ ${#MODELS[@]} -gt 0 ] || MODELS=("$RUNS"/crops8/*/model.onnx "$RUNS"/crops/*/model.onnx "$RUNS"/archs/*/model.onnx)
PYTHONPATH=${PYTHONPATH:-.} $PY benchmarks/heldout.py fov "${MODELS[@]}" --cache "$RUNS/heldout" \
  --fov-px 500 750 1000 1250 0
