# Copyright 2026 celegans_autofocus maintainers
#
# Licensed under the Apache License, Version 2.0 (the "License");
# you may not use this file except in compliance with the License.
# You may obtain a copy of the License at
#
#     http://www.apache.org/licenses/LICENSE-2.0
#
# Unless required by applicable law or agreed to in writing, software
# distributed under the License is distributed on an "AS IS" BASIS,
# WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, either express or implied.
# See the License for the specific language governing permissions and
# limitations under the License.

"""Architecture comparison under one equal CPU budget (the paper's Table 3), on held-out renders.

Every model was trained by ``benchmarks/studies.sh benchmarks/study_archs.yaml RUNS/archs ARCH...`` on the same
budget (the same rendered pool of 500 px crops around a worm, the same 1000 optimiser steps, seed and
augmentation; only the architecture differs) and exported from its last checkpoint (no selection on
validation). Each exported ONNX model is scored on the same held-out renders (benchmarks/heldout.py): 500 px
crops around a worm (the training window), 1000 px crops and complete frames (windows it never saw), offsets
uniform in +-200 steps. Per model: MAE and sign accuracy per window, the ONNX size, and the ORT latency of one
forward pass (batch 1, one thread) at the model's input size.

    PYTHONPATH=. python benchmarks/architectures.py RUNS > benchmarks/architectures.json
    PYTHONPATH=. python benchmarks/architectures.py RUNS --study archs_paper > benchmarks/architectures_paper.json

``--study NAME`` scores RUNS/NAME/ARCH/model.onnx, trained on benchmarks/study_NAME.yaml's budget (or ``--budget``).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import FULL, held_out, model_spec, predict, summary  # noqa: E402

ARCHS = ["plain7", "mobilenetv3_small_100", "mobilenetv3_large_100", "resnet18", "convnextv2_pico"]
FOVS_PX = [500, 1000, FULL]


def ort_latency_ms(model: Path, n: int = 50) -> float:
    """p50 ms of one ``FocusPredictor`` call (one ORT thread, batch 1) on an image already at the input size."""
    from celegans_autofocus.core.predictor import FocusPredictor

    predictor = FocusPredictor(model, providers=["CPUExecutionProvider"], intra_op_threads=1)
    side = predictor.spec.input_px
    x = np.random.default_rng(0).standard_normal((1, side, side)).astype(np.float32)
    times = []
    for i in range(n + 5):
        t0 = time.perf_counter()
        predictor.predict_batch_with_sigma([x[0]])
        if i >= 5:
            times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, help="the studies' folder: RUNS/archs/ARCH/model.onnx, RUNS/heldout")
    parser.add_argument("--study", default="archs", help="RUNS/STUDY/ARCH/model.onnx, budget "
                        "benchmarks/study_STUDY.yaml (archs: the project's recipe; archs_paper: the paper's optimiser)")
    parser.add_argument("--budget", type=Path, help="the runs' budget config (default benchmarks/study_STUDY.yaml)")
    parser.add_argument("--archs", nargs="+", default=ARCHS)
    parser.add_argument("--views", type=int, default=64)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    import yaml

    budget_path = args.budget or Path(__file__).resolve().parent / f"study_{args.study}.yaml"
    budget = yaml.safe_load(budget_path.read_text())
    rows, abs_err_500 = [], {}
    for arch in args.archs:
        model = args.runs / args.study / arch / "model.onnx"
        history = json.loads((args.runs / args.study / arch / "history.json").read_text())
        # the median epoch: the first run's first epoch also rendered the shared pool
        spec = model_spec(model)
        row = {"arch": arch, "epoch_s_median": round(float(np.median([h["epoch_s"] for h in history])), 1),
               "onnx_mb": round(model.stat().st_size / 2**20, 2), "input_px": spec.input_px}
        for fov in FOVS_PX:
            images, true, _ = held_out(spec, [fov], args.views, args.seed, cache=args.runs / "heldout")
            pred = predict(model, images, spec)
            row[str(fov or "full")] = summary(pred, true)
            if fov == 500:
                abs_err_500[arch] = np.abs(pred - true)
        row["ort_ms"] = round(ort_latency_ms(model), 3)
        rows.append(row)
        print(json.dumps(row), file=sys.stderr, flush=True)
    from celegans_autofocus.training.stats import paired_comparison

    best = min(rows, key=lambda r: r["500"]["mae_steps"])["arch"]
    versus_best = {arch: paired_comparison(abs_err_500[best], err) for arch, err in abs_err_500.items() if arch != best}
    held = {"views": args.views, "seed": args.seed, "range_steps": 200, "fov_px": FOVS_PX}
    print(json.dumps({"budget": budget, "held_out": held, "rows": rows, "best_on_500px": best,
                      "paired_500px_best_vs": versus_best}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
