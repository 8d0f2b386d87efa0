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

"""``celegans-autofocus finetune DATASET``: adapt the bundled model to your microscope (:mod:`training.finetune`).

Trains on the dataset's training plates, exports the result (ONNX, metadata naming the parent model and
the training data's hash), then serves both the parent and the new model through ``FocusPredictor`` on the
held-out plates and prints their errors side by side, with the paired test.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .torch_setup import torch_ready

HELP = "fine-tune the bundled focus model on your labelled stacks (CPU, minutes) and compare on held-out plates"
COLUMNS = ("model", "kind", "n", "mae_steps", "median_abs_error_steps", "p90_abs_error_steps", "sign_accuracy",
           "in_focus_fraction")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..training.finetune_config import FinetuneConfig  # torch-free

    d = FinetuneConfig()
    data = parser.add_argument_group("data")
    data.add_argument("dataset", type=Path, help="labelled dataset (plates/..., labels.csv); for a crop model "
                      "(the bundled one) with crop stacks (`crop --fov 500`, then `label`)")
    data.add_argument("--val-fraction", type=float, default=d.val_fraction,
                      help="share of plates held out for the before/after figures (never trained on)")
    data.add_argument("--target", choices=("auto", "labels", "truth"), default=d.target,
                      help="training target: labels.csv, the simulator truth in stack.yaml, or truth where known")
    data.add_argument("--seed", type=int, default=d.seed, help="seed of the plate split, order and augmentation")
    data.add_argument("--include-flagged", action="store_true", default=d.include_flagged,
                      help="also train on stacks the labeller flagged (labels.csv ambiguous=1; check them with "
                      "`label --plots` first): by default their labels are not trusted")
    model = parser.add_argument_group("model")
    model.add_argument("--model", type=Path, default=None,
                       help="model to start from: an exported .onnx (plain7, resnet18_half) or a training "
                       "checkpoint .pt (default: the bundled models/default.onnx)")
    opt = parser.add_argument_group("optimisation")
    opt.add_argument("--epochs", type=int, default=d.epochs, help="passes over the training images")
    opt.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step")
    opt.add_argument("--lr", type=float, default=d.lr, help="AdamW peak learning rate (cosine decay to 0)")
    opt.add_argument("--weight-decay", type=float, default=d.weight_decay, help="AdamW weight decay")
    opt.add_argument("--huber-steps", type=float, default=d.huber_steps,
                     help="Huber loss: quadratic within this many steps, linear beyond (one-output models)")
    opt.add_argument("--nll-beta", type=float, default=d.nll_beta,
                     help="a model with an uncertainty output trains on the beta-NLL loss with this beta (unless "
                          "it was trained with huber_nll, which it keeps)")
    run_g = parser.add_argument_group("run")
    run_g.add_argument("--out", type=Path, default=Path("runs/finetune"),
                       help="directory for finetuned.pt, history.json, split.json and the evaluation")
    run_g.add_argument("--export", type=Path, metavar="OUT.onnx", default=None,
                       help="where to write the fine-tuned model (default: OUT/finetuned.onnx)")
    run_g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    run_g.add_argument("--json", type=Path, default=None, help="also write the summary to this JSON file")


def run(args: argparse.Namespace) -> int:
    if not torch_ready("finetune", args.threads):
        return 2
    from ..core.metrics import SIGN_THRESHOLD_STEPS
    from ..core.predictor import ModelError, default_model_path
    from ..training.checkpoint import CheckpointError
    from ..training.data import DatasetError
    from ..training.evaluate import evaluate, format_table, write_outputs
    from ..training.export import ExportError, check_onnx_path, export_checkpoint
    from ..training.finetune import finetune
    from ..training.finetune_config import FinetuneConfig
    from ..training.onnx_import import OnnxImportError

    onnx_path = args.export or args.out / "finetuned.onnx"
    try:
        parent = args.model or default_model_path()
        # bad output paths are refused now, not after the training: neither the export nor --json replaces an input
        check_onnx_path(onnx_path, parent)
        if args.json and args.json.suffix.lower() != ".json":
            raise ValueError(f"--json {args.json}: the summary file to write must end in .json")
        cfg = FinetuneConfig(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr,
                             weight_decay=args.weight_decay, huber_steps=args.huber_steps, nll_beta=args.nll_beta,
                             val_fraction=args.val_fraction, target=args.target, seed=args.seed,
                             include_flagged=args.include_flagged)
        summary = finetune(args.dataset, parent, cfg, args.out)
        summary["export"] = export_checkpoint(summary["checkpoint"], onnx_path)
        result = evaluate([Path(parent), onnx_path], args.dataset, plates=summary["val_plates"], fov_sizes_px=(),
                          target=args.target)
        write_outputs(result, args.out / "held_out")
    except KeyboardInterrupt:
        print("finetune: interrupted", file=sys.stderr)
        return 130
    except (DatasetError, CheckpointError, ExportError, ModelError, OnnxImportError, FloatingPointError,
            ValueError) as exc:
        print(f"finetune: {exc}", file=sys.stderr)
        return 1
    before, after = (m["name"] for m in result["models"])
    rows = [r for r in result["table"] if r["kind"] in summary["kinds"]]
    summary["held_out"] = {"rows": rows, "paired": {k: result["paired"][k] for k in summary["kinds"]
                                                    if k in result["paired"]}}
    print(f"fine-tuned {before} on {summary['train_images']} images of plates {', '.join(summary['train_plates'])} "
          f"in {summary['train_s']:.0f} s; wrote {onnx_path}")
    print(f"held-out plates {', '.join(summary['val_plates'])} (errors in steps; sign accuracy where "
          f"|true| > {SIGN_THRESHOLD_STEPS:g} steps): before = {before}, after = {after}")
    print(format_table(rows, COLUMNS))
    for kind, paired in summary["held_out"]["paired"].items():
        change = (paired["mae_b_steps"] - paired["mae_a_steps"]) / paired["mae_a_steps"]
        print(f"  {kind}: MAE {paired['mae_a_steps']:.1f} -> {paired['mae_b_steps']:.1f} steps ({change:+.0%}); "
              f"paired Wilcoxon signed-rank p = {paired['wilcoxon_p']:.2g} (n = {paired['n']})")
    if args.json:
        args.json.write_text(json.dumps(summary, indent=2))
    return 0
