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

"""``celegans-autofocus evaluate MODEL [MODEL_B] --dataset DATASET``: errors, FOV table, paired test, plot."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = ("evaluate ONNX models or checkpoints on a labelled dataset: MAE/median/p90/sign accuracy for full "
        "frames and crops, the field-of-view table, and a paired Wilcoxon test of two models")

ERROR_COLUMNS = ("n", "mae_steps", "median_abs_error_steps", "p90_abs_error_steps", "bias_steps", "in_focus_fraction",
                 "sign_accuracy", "n_sign")
SUMMARY_COLUMNS = ("model", "kind", *ERROR_COLUMNS)
FOV_COLUMNS = ("fov_px", *ERROR_COLUMNS)
PAIRED_COLUMNS = ("kind", "n", "mae_a_steps", "mae_b_steps", "median_diff_steps", "shapiro_p", "wilcoxon_p")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    io = parser.add_argument_group("inputs")
    io.add_argument("models", type=Path, nargs="+", metavar="MODEL",
                    help="ONNX model (.onnx, served as shipped) or checkpoint (.pt); two for a paired test")
    io.add_argument("--dataset", type=Path, required=True, help="labelled dataset (held-out plates)")
    io.add_argument("--plates", nargs="+", help="only these plates (default: all in labels.csv)")
    io.add_argument("--target", choices=("auto", "labels", "truth"), default="auto",
                    help="reference offsets: labels.csv, simulator truth, or truth where known")
    io.add_argument("--max-images", type=int, default=0, help="evenly subsample to this many images (0 = all)")
    how = parser.add_argument_group("evaluation")
    how.add_argument("--fov-px", type=int, nargs="+", default=[500, 750, 1000, 1250],
                     help="crop sizes of the field-of-view table (around the worm of stack.yaml)")
    how.add_argument("--device", choices=("cpu", "auto", "cuda"), default="cpu", help="where models run")
    how.add_argument("--batch-size", type=int, default=16, help="images per model call")
    out = parser.add_argument_group("output")
    out.add_argument("--out", type=Path, default=Path("runs/evaluate"),
                     help="directory for evaluation.json, predictions.csv and pred_vs_true.png")


def run(args: argparse.Namespace) -> int:
    from ..core.metrics import IN_FOCUS_STEPS, SIGN_THRESHOLD_STEPS
    from ..core.predictor import ModelError, is_onnx_model
    from ..core.sensor import STEP_UM
    from ..training.data import DatasetError
    from ..training.evaluate import evaluate, format_table, write_outputs

    if len(args.models) > 2:
        print(f"evaluate: give one model, or two for the paired test (got {len(args.models)})", file=sys.stderr)
        return 2
    if args.batch_size < 1 or args.max_images < 0:
        print("evaluate: --batch-size must be >= 1 and --max-images >= 0", file=sys.stderr)
        return 2
    if not all(map(is_onnx_model, args.models)):
        try:
            import torch  # noqa: F401
        except ImportError:
            print("evaluate: checkpoints need torch (extra [train]); export them or pass .onnx models",
                  file=sys.stderr)
            return 2
    errors: tuple[type[Exception], ...] = (DatasetError, ModelError, ValueError)
    try:
        from ..training.checkpoint import CheckpointError
        errors += (CheckpointError,)
    except ImportError:  # no torch: only ONNX models, already checked above
        pass
    try:
        result = evaluate(args.models, args.dataset, plates=args.plates, fov_sizes_px=args.fov_px,
                          target=args.target, device=args.device, batch_size=args.batch_size,
                          max_images=args.max_images)
        paths = write_outputs(result, args.out)
    except errors as exc:
        print(f"evaluate: {exc}", file=sys.stderr)
        return 1
    print(f"errors in steps (1 step = {STEP_UM:g} um); in focus: |error| <= {IN_FOCUS_STEPS:g}; sign accuracy where "
          f"|true| > {SIGN_THRESHOLD_STEPS:g} steps, bias where |true| <= {SIGN_THRESHOLD_STEPS:g}; "
          f"dataset {args.dataset}")
    print(format_table(result["table"], SUMMARY_COLUMNS))
    if result["fov_table"]:
        print(f"\nfield of view ({result['fov_model']}; crops around the worm of stack.yaml, same frames)")
        print(format_table(result["fov_table"], FOV_COLUMNS))
    if result["paired"]:
        paired = result["paired"]
        rows = [{"kind": k, **paired[k]} for k in ("full", "crop", "all") if k in paired]
        print(f"\npaired test on |error|: A = {paired['a']}, B = {paired['b']} (Shapiro-Wilk, Wilcoxon signed-rank)")
        print(format_table(rows, PAIRED_COLUMNS))
        for row in rows:
            print(f"  {row['kind']}: {row['verdict']}")
    print(f"\nwrote {paths['json']}, {paths['csv']}, {paths['png']}")
    return 0
