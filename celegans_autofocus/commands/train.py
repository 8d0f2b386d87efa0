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

"""``celegans-autofocus train [DATASET]``: train a focus-offset regressor (PyTorch + timm, extra [train]).

Data-parallel on N processes: ``torchrun --nproc_per_node N -m celegans_autofocus.cli train ...``
(``--batch-size`` stays the global batch; :mod:`training.distributed`).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from .torch_setup import torch_ready

HELP = "train a CNN that predicts the signed steps to focus from one image (needs the [train] extra)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from ..core.images import NORMALIZE
    from ..core.optics import LOOKS
    from ..training.config import LOSSES, TrainConfig  # torch-free

    d = TrainConfig()
    bool_opt = argparse.BooleanOptionalAction
    data = parser.add_argument_group("data")
    data.add_argument("dataset", type=Path, nargs="?", help="labelled dataset (plates/..., labels.csv); validation "
                      "plates are taken from it by plate; omit it to train on --synthetic-train only and validate on "
                      "--synthetic-val")
    data.add_argument("--crops", action=bool_opt, default=d.crops, help="train on cropped stacks too (the "
                      "paper's augmentation); validation always reports both kinds")
    data.add_argument("--val-fraction", type=float, default=d.val_fraction,
                      help="share of plates held out for validation; 1 = all (train only on --synthetic-train)")
    data.add_argument("--target", choices=("auto", "labels", "truth"), default=d.target,
                      help="training target: labels.csv, the simulator truth in stack.yaml, or truth where known")
    data.add_argument("--max-val-samples", type=int, default=d.max_val_samples,
                      help="evenly subsample validation images to at most this many (0 = all)")
    data.add_argument("--real-frames", default=d.real_frames, metavar="DIR",
                      help="folder of real, sharp worm frames: log the model's median answer on each source's "
                           "detector crops after every epoch (near 0 is right; it trains and chooses nothing)")
    data.add_argument("--real-frames-fov-px", type=int, default=d.real_frames_fov_px,
                      help="crop side around the detected worm for --real-frames, as worm_detector_node's fov_px")
    synth = parser.add_argument_group("on-the-fly synthetic training samples (simulator fast path)")
    synth.add_argument("--synthetic-train", type=int, default=d.synthetic_train,
                       help="pool of rendered training samples added to the dataset's training plates (0 = none)")
    synth.add_argument("--synthetic-range-steps", type=float, default=d.synthetic_range_steps,
                       help="offsets drawn uniformly in +- this many steps")
    synth.add_argument("--synthetic-near-fraction", type=float, default=d.synthetic_near_fraction,
                       help="share of offsets drawn within +- --synthetic-near-steps instead (near focus)")
    synth.add_argument("--synthetic-near-steps", type=float, default=d.synthetic_near_steps,
                       help="half-width of the near-focus offset range")
    synth.add_argument("--synthetic-crop-fraction", type=float, default=d.synthetic_crop_fraction,
                       help="share of rendered views that are crops around a worm (with --crops)")
    synth.add_argument("--synthetic-fov-px", type=int, nargs="+", default=d.synthetic_fov_px,
                       help="crop sizes (full-frame px) to draw from")
    synth.add_argument("--synthetic-offsets-per-view", type=int, default=d.synthetic_offsets_per_view,
                       help="offsets rendered per random scene and view")
    synth.add_argument("--synthetic-refresh", type=float, default=d.synthetic_refresh,
                       help="share of the pool redrawn every epoch (0 = a fixed pool)")
    synth.add_argument("--synthetic-oversample", type=float, default=d.synthetic_oversample,
                       help="render at this multiple of --input-px, then preprocess (INTER_AREA) like a frame")
    synth.add_argument("--synthetic-crop-jitter", type=float, default=d.synthetic_crop_jitter,
                       help="crop centre jittered by up to this fraction of the fov (as a detector places it)")
    synth.add_argument("--synthetic-randomize", type=float, default=d.synthetic_randomize,
                       help="share of views drawn with domain-randomised optics (core.randomize: magnification, NA, "
                       "absorption, lawn, stage, camera); 0 = the default optics only")
    synth.add_argument("--synthetic-look", nargs="+", default=d.synthetic_look, metavar="LOOK",
                       help="core.optics.LOOKS of the views not randomised and of the validation (several: each view "
                       "draws one): " + ", ".join(LOOKS))
    synth.add_argument("--synthetic-val", type=int, default=d.synthetic_val,
                       help="held-out rendered validation samples (scenes of --synthetic-val-seed; 0 = none)")
    synth.add_argument("--synthetic-val-seed", type=int, default=d.synthetic_val_seed,
                       help="seed of the validation scenes")
    synth.add_argument("--synthetic-val-range-steps", type=float, default=d.synthetic_val_range_steps,
                       help="validation offsets uniform in +- this many steps")
    synth.add_argument("--synthetic-val-fov-px", type=int, nargs="+", default=d.synthetic_val_fov_px,
                       help="validation crop sizes (full-frame px)")
    model = parser.add_argument_group("model")
    model.add_argument("--arch", default=d.arch, help="timm model name, e.g. convnextv2_tiny, convnextv2_pico, "
                       "resnet18, mobilenetv3_small_100, mobilenetv3_large_100")
    model.add_argument("--pretrained", action=bool_opt, default=d.pretrained,
                       help="start from timm's ImageNet weights (downloads them; needs the model hub)")
    model.add_argument("--init", default=d.init, metavar="CHECKPOINT.pt|MODEL.onnx",
                       help="start from this checkpoint's or export's weights (same --arch and loss head), not from "
                            "scratch; exports of plain7 and resnet18_half only, whose folded BatchNorms stay frozen")
    model.add_argument("--input-px", type=int, default=d.input_px, help="square model input side (paper: 500)")
    model.add_argument("--normalize", choices=NORMALIZE, default=d.normalize,
                       help="input normalisation: zscore (the image's std) or contrast (its mean: keeps how dark)")
    model.add_argument("--output-scale", type=float, default=d.output_scale,
                       help="steps per unit of raw output (the net learns offset / scale)")
    opt = parser.add_argument_group("optimisation (paper defaults)")
    opt.add_argument("--epochs", type=int, default=d.epochs, help="training epochs")
    opt.add_argument("--batch-size", type=int, default=d.batch_size, help="images per step")
    opt.add_argument("--lr", type=float, default=d.lr, help="Adam learning rate")
    opt.add_argument("--lr-step-epochs", type=int, default=d.lr_step_epochs, help="StepLR step size (epochs)")
    opt.add_argument("--lr-gamma", type=float, default=d.lr_gamma, help="StepLR factor")
    opt.add_argument("--loss", choices=LOSSES, default=d.loss,
                     help="regression loss; gaussian_nll and huber_nll add an uncertainty output (mean and "
                          "log-variance)")
    opt.add_argument("--nll-beta", type=float, default=d.nll_beta,
                     help="beta-NLL: weight each NLL term by var**beta (0 = plain Gaussian NLL)")
    opt.add_argument("--optimizer", choices=("adam", "adamw"), default=d.optimizer, help="optimizer")
    opt.add_argument("--weight-decay", type=float, default=d.weight_decay, help="weight decay")
    opt.add_argument("--schedule", choices=("step", "onecycle", "cosine"), default=d.schedule,
                     help="LR schedule: StepLR by epoch, or OneCycle (peak --lr) / cosine (from --lr) by step")
    opt.add_argument("--rotation-deg", type=float, default=d.rotation_deg, help="random rotation up to +- this")
    opt.add_argument("--hflip", action=bool_opt, default=d.hflip, help="random horizontal flips")
    opt.add_argument("--vflip", action=bool_opt, default=d.vflip, help="random vertical flips")
    opt.add_argument("--rot90", action=bool_opt, default=d.rot90, help="random quarter turns")
    run_g = parser.add_argument_group("run")
    run_g.add_argument("--out", type=Path, default=Path("runs/train"), help="directory for checkpoints and history")
    run_g.add_argument("--resume", action="store_true", help="continue from OUT/last.pt")
    run_g.add_argument("--seed", type=int, default=d.seed, help="seed of the split, sampling and augmentation")
    run_g.add_argument("--device", choices=("auto", "cpu", "cuda"), default=d.device, help="torch device")
    run_g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    run_g.add_argument("--workers", type=int, default=d.workers,
                       help="DataLoader worker processes that read, render and augment (0 = in this process)")
    run_g.add_argument("--export", type=Path, metavar="OUT.onnx",
                       help="export the best checkpoint to this ONNX file when training ends")


def run(args: argparse.Namespace) -> int:
    if not torch_ready("train", args.threads):
        return 2
    from ..training.checkpoint import CheckpointError
    from ..training.config import ConfigError, TrainConfig
    from ..training.data import DatasetError
    from ..training.export import ExportError, check_onnx_path, export_checkpoint
    from ..training.loop import train
    from ..training.models import ArchError

    fields = TrainConfig.__dataclass_fields__
    try:
        cfg = TrainConfig.from_dict({k: v for k, v in vars(args).items() if k in fields})
        if args.export:  # refused now, not after the training it would end
            check_onnx_path(args.export, *([cfg.init] if cfg.init else []))
        summary = train(args.dataset, cfg, args.out, resume=args.resume)
        if summary["rank"] != 0:
            return 0
        if args.export:
            summary["export"] = export_checkpoint(summary["best"], args.export)
    except KeyboardInterrupt:
        print(f"train: interrupted; continue with the same command plus --resume (from {args.out / 'last.pt'})",
              file=sys.stderr)
        return 130
    except (DatasetError, ConfigError, CheckpointError, ArchError, ExportError, FloatingPointError, ValueError) as exc:
        print(f"train: {exc}", file=sys.stderr)
        return 1
    history = summary.pop("history")
    print(json.dumps({**summary, "last_epoch": history[-1] if history else None}, indent=2))
    return 0
