#!/usr/bin/env bash
# The `celegans-autofocus train` baseline for the bundled model, end to end through the CLI:
#   1. writes the held-out validation set (6 plates x 2 full-frame stacks, +-200 steps every 10,
#      seed 1000), labels it, crops 500 px stacks around the detected worms, labels again
#      (this set is also the one benchmarks/architectures.md, crops_wilcoxon.md and fov.md use);
#   2. trains with config/train_default.yaml (mobilenetv3_small_100, 128 px): all training images
#      rendered on the fly by the simulator's fast path (never the validation scenes);
#   3. exports the best checkpoint to WORK_DIR/timm_default.onnx (parity-checked), evaluates it with
#      the field-of-view table and measures its CPU latency on full frames.
# The bundled models/default.onnx itself (plain7 on worm crops, far better on this CPU budget) comes
# from benchmarks/train_default_model.py; see models/MODEL_CARD.md for both.
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
  --export "$WORK/timm_default.onnx" | tee "$WORK/train_default.json"
$CLI evaluate "$WORK/timm_default.onnx" --dataset "$VAL" --fov-px 500 750 1000 1250 --out "$WORK/eval_default"
$PY -c "import json, sys; from celegans_autofocus.training.latency import predictor_latency_ms as f; \
print(json.dumps(f(sys.argv[1]), indent=2))" "$WORK/timm_default.onnx" | tee "$WORK/latency_default.json"
