#!/usr/bin/env bash
# THE command that trains the bundled models/default.onnx, from nothing but this repository:
#   1. writes the held-out validation set (6 plates x 2 full-frame stacks, +-200 steps every 10,
#      seed 1000), labels it, crops 500 px stacks around the detected worms, labels again;
#   2. trains with config/train_default.yaml: all training images rendered on the fly by the
#      simulator's fast path (never the validation scenes), validation on the written plates;
#   3. exports the best checkpoint to models/default.onnx (parity-checked), evaluates it and
#      measures its CPU latency on full frames.
# Usage: benchmarks/train_default_model.sh [WORK_DIR]   (default /tmp/caf; needs the [train] extra)
set -euo pipefail
WORK=${1:-/tmp/caf}
CLI=${CLI:-.venv/bin/celegans-autofocus}
PY=${PY:-.venv/bin/python}
VAL=$WORK/val
if [ ! -f "$VAL/labels.csv" ]; then
  $CLI synth "$VAL" --plates 6 --stacks-per-plate 2 --range-steps 200 --step-every 10 --seed 1000
  $CLI label "$VAL" --quiet
  $CLI crop "$VAL" --fov 500 --quiet
  $CLI label "$VAL" --quiet
fi
RESUME=$( [ -f "$WORK/run_default/last.pt" ] && echo --resume || true )
$CLI train "$VAL" --config config/train_default.yaml --out "$WORK/run_default" $RESUME \
  --export models/default.onnx | tee "$WORK/train_default.json"
$CLI evaluate models/default.onnx --dataset "$VAL" --fov-px 500 750 1000 1250 --out "$WORK/eval_default"
$PY -c "import json; from celegans_autofocus.training.latency import predictor_latency_ms as f; \
print(json.dumps(f('models/default.onnx'), indent=2))" | tee "$WORK/latency_default.json"
