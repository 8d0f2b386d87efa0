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

"""Fine-tuning a focus model (by default the bundled one) on a lab's own labelled z-stacks, on the CPU.

The parent is an exported ONNX file of a conv-BatchNorm architecture (:mod:`training.onnx_import`) or a training
checkpoint.
The dataset is split by plate (:func:`training.data.split_plates`); the model trains on the training
plates' images of its own view (``input_view`` in the parent's metadata: crop stacks for a crop model),
preprocessed exactly as the parent's metadata says, with the 8 lossless flips and 90-degree rotations,
Huber loss (a parent with the uncertainty head: its own ``huber_nll`` if its metadata names it, else beta-NLL, so
the sigma adapts too) and
AdamW on a cosine schedule for a fixed number of epochs, each one the training loop's
(:func:`training.loop.train_epoch` over a :func:`training.datasets.train_loader`). BatchNorm statistics stay frozen
(an exported model has them folded into its convolutions, and a few stacks are too few to re-estimate them).
Nothing is chosen on the held-out plates: the final weights are saved (``OUT/finetuned.pt``, a checkpoint
:func:`training.export.export_checkpoint` exports, recording the parent model and the training data's hash),
and the held-out plates only give the before/after figures.
"""
from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch
from tqdm import tqdm

from ..core.metrics import error_summary
from .checkpoint import FORMAT, FROZEN_NORMS, CheckpointError, save_checkpoint
from .config import TrainConfig
from .data import DatasetError, Sample, data_hash, dataset_step_um, load_samples, split_plates
from .datasets import ArrayImages, TrainSamples, train_loader
from .finetune_config import FinetuneConfig
from .infer import predict_steps
from .loop import cache_images, loss_fn, make_optimizer, make_scheduler, train_epoch
from .parent import Parent, load_parent

CHECKPOINT = "finetuned.pt"
VIEW_KINDS = {"crop": ("crop",), "full": ("full",), "mixed": ("full", "crop")}


def _log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def select_samples(dataset: Path, parent: Parent, cfg: FinetuneConfig) -> tuple[list[Sample], list[Sample], dict]:
    """(training samples, held-out samples, split) of the parent's view; :class:`DatasetError` if unusable."""
    samples = load_samples(dataset, cfg.target)
    train_plates, val_plates = split_plates(samples, cfg.val_fraction, cfg.seed, str(dataset))
    kinds = VIEW_KINDS.get(parent.input_view, VIEW_KINDS["mixed"])
    view = [s for s in samples if s.kind in kinds]
    if not view:
        hint = (f"; run `celegans-autofocus crop {dataset} --fov 500` and `label` again"
                if kinds == ("crop",) else "")
        raise DatasetError(f"{dataset}: no {'/'.join(kinds)} images, and {parent.path.name} reads "
                           f"{parent.input_view!r} images{hint}")
    step_um = dataset_step_um(view, str(dataset))
    if step_um != parent.step_um:
        raise DatasetError(f"{dataset}: stacks with step_um {step_um}, but {parent.path.name} counts steps of "
                           f"{parent.step_um} um; fine-tune on stacks of the model's step size")
    train = [s for s in view if s.plate in set(train_plates)]
    held_out = [s for s in view if s.plate in set(val_plates)]
    on_label = [s for s in train if s.true_offset_steps is None or cfg.target == "labels"]
    left_out = [] if cfg.include_flagged else sorted({(s.plate, s.stack) for s in on_label if s.ambiguous})
    if left_out:  # a label its own labeller doubts is not trained on
        train = [s for s in train if (s.plate, s.stack) not in set(left_out)]
        _log(f"finetune: {len(left_out)} flagged stack(s) left out of training (--include-flagged to use them): "
             + ", ".join(f"{p}/{st}" for p, st in left_out))
    for name, part, plates in (("training", train, train_plates), ("held-out", held_out, val_plates)):
        if not part:
            raise DatasetError(f"{dataset}: no {'/'.join(kinds)} images on the {name} plates {plates}")
    return train, held_out, {"train_plates": train_plates, "val_plates": val_plates, "kinds": list(kinds),
                             "flagged_left_out": [f"{p}/{st}" for p, st in left_out]}


def finetune(dataset: Path | str, parent_path: Path | str, cfg: FinetuneConfig, out: Path | str) -> dict:
    """Fine-tune ``parent_path`` on ``dataset``'s training plates; returns the summary (checkpoint path, split)."""
    cfg.validate()
    dataset, out = Path(dataset), Path(out)
    if (out / CHECKPOINT).exists():
        raise CheckpointError(f"{out / CHECKPOINT} exists (an earlier fine-tuning): choose a new --out")
    parent = load_parent(parent_path)
    if parent.spec != TrainConfig(input_px=parent.spec.input_px, normalize=parent.spec.normalize).spec:
        raise DatasetError(f"{parent.path}: preprocessing {parent.spec.to_dict()} is not the one training "
                           "exports; cannot fine-tune it")
    train_samples, held_out, split = select_samples(dataset, parent, cfg)
    out.mkdir(parents=True, exist_ok=True)
    (out / "split.json").write_text(json.dumps({"dataset": str(dataset), **split}, indent=2))
    t0 = time.perf_counter()
    train_set = cache_images(train_samples, parent.spec, "cache train")
    if len(train_set) < cfg.batch_size:
        raise DatasetError(f"{dataset}: {len(train_set)} readable training images, fewer than one batch "
                           f"({cfg.batch_size}); acquire more stacks or lower --batch-size")
    model = parent.model
    train_cfg = TrainConfig(arch=parent.arch, crops="crop" in split["kinds"], epochs=cfg.epochs,
                            batch_size=cfg.batch_size, lr=cfg.lr, loss=parent.finetune_loss,
                            nll_beta=cfg.nll_beta if parent.finetune_loss == "gaussian_nll" else 0.0,
                            optimizer="adamw",
                            weight_decay=cfg.weight_decay, schedule="cosine", rot90=True, hflip=True, vflip=True,
                            input_px=parent.spec.input_px, normalize=parent.spec.normalize,
                            output_scale=parent.output_scale, rotation_deg=0.0, val_fraction=cfg.val_fraction,
                            target=cfg.target, seed=cfg.seed, device="cpu")
    loader = train_loader(TrainSamples([ArrayImages(train_set)], train_cfg), train_cfg)
    optimizer = make_optimizer(model, train_cfg)
    scheduler, _ = make_scheduler(optimizer, train_cfg, len(loader))
    criterion = loss_fn(train_cfg) if parent.sigma else torch.nn.HuberLoss(
        delta=cfg.huber_steps / parent.output_scale)
    torch.manual_seed(cfg.seed)
    history = []
    for epoch in range(cfg.epochs):
        started = time.perf_counter()
        loss = train_epoch(model, optimizer, criterion, loader, train_cfg, torch.device("cpu"), epoch, scheduler,
                           frozen_norms=True)
        history.append({"epoch": epoch + 1, "train_loss": loss, "epoch_s": round(time.perf_counter() - started, 1)})
        _log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {loss:.4f}, {history[-1]['epoch_s']:.0f} s")
    train_s = time.perf_counter() - t0
    held_set = cache_images(held_out, parent.spec, "cache held-out")
    model.eval()
    pred = predict_steps(model, held_set.images, parent.output_scale, torch.device("cpu"), batch_size=64)
    held_mae = error_summary(pred - held_set.offsets_steps, held_set.offsets_steps)["mae_steps"]
    checkpoint = out / CHECKPOINT
    save_checkpoint({"format": FORMAT, "model": model.state_dict(), "epoch": cfg.epochs,
                     "config": train_cfg.to_dict(), "best_val_mae_steps": held_mae, "val_mae_steps": held_mae,
                     "history": history, "train_data_hash": data_hash(train_samples, json.dumps(asdict(cfg))),
                     "input_view": parent.input_view, "step_um": parent.step_um, "parent_model": parent.describe(),
                     "finetune": asdict(cfg), FROZEN_NORMS: parent.frozen_norms,
                     **{k: split[k] for k in ("train_plates", "val_plates")}}, checkpoint)
    (out / "history.json").write_text(json.dumps(history, indent=2))
    return {"checkpoint": str(checkpoint), "parent": str(parent.path), "train_images": len(train_set),
            "held_out_images": len(held_set), "train_s": round(train_s, 1), "held_out_mae_steps_torch": held_mae,
            **split, "history": history}
