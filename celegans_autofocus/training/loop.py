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

"""The training loop: split by plate, cache preprocessed images, train, validate, checkpoint, resume.

Files in ``out``: ``last.pt`` (every epoch, atomic; ``--resume`` continues from it), ``best.pt``
(lowest validation MAE), ``history.json`` and ``split.json`` (train/validation plates).
Randomness is seeded per epoch from (seed, epoch), so a resumed run draws the same samples
and augmentations as an uninterrupted one.
"""
from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from ..core.images import PreprocessSpec, preprocess
from .augment import augment
from .checkpoint import FORMAT, CheckpointError, checkpoint_config, load_checkpoint, load_weights, save_checkpoint
from .config import TrainConfig
from ..core.metrics import error_summary
from .data import DatasetError, ImageSet, Sample, data_hash, dataset_step_um, load_samples, read_gray, split_plates
from .infer import predict_steps, resolve_device
from .models import create_model

LAST, BEST = "last.pt", "best.pt"


def _log(message: str) -> None:
    tqdm.write(message, file=sys.stderr)


def cache_images(samples: list[Sample], spec: PreprocessSpec, desc: str) -> ImageSet:
    """Read and preprocess every sample once; unreadable files are reported by name and skipped."""
    images, offsets, kinds = [], [], []
    for s in tqdm(samples, desc=desc, unit="img", file=sys.stderr, leave=False):
        try:
            gray = read_gray(s.path)
        except DatasetError as exc:
            _log(f"skipped: {exc}")
            continue
        images.append(preprocess(gray, spec).astype(np.float16))
        offsets.append(s.offset_steps)
        kinds.append(s.kind)
    side = spec.input_px
    return ImageSet(np.stack(images) if images else np.zeros((0, side, side), np.float16),
                    np.asarray(offsets, dtype=np.float64), kinds)


def _subsample(samples: list[Sample], limit: int) -> list[Sample]:
    if not limit or len(samples) <= limit:
        return samples
    idx = np.linspace(0, len(samples) - 1, limit).round().astype(int)
    return [samples[i] for i in idx]


def _input_view(kinds: set[str]) -> str:
    return "mixed" if len(kinds) > 1 else (next(iter(kinds)) if kinds else "mixed")


def validate(model: torch.nn.Module, val: ImageSet, cfg: TrainConfig, device: torch.device) -> dict:
    """Return the validation summary: overall plus per kind (full/crop)."""
    pred = predict_steps(model, val.images, cfg.output_scale, device, batch_size=max(cfg.batch_size, 16))
    kinds = np.asarray(val.kinds)
    out = {"all": error_summary(pred - val.offsets_steps, val.offsets_steps)}
    for kind in ("full", "crop"):
        mask = kinds == kind
        if mask.any():
            out[kind] = error_summary(pred[mask] - val.offsets_steps[mask], val.offsets_steps[mask])
    return out


def _loss_fn(name: str):
    return torch.nn.MSELoss() if name == "mse" else torch.nn.HuberLoss(delta=0.1)


def _check_resume(state: dict, cfg: TrainConfig, path: Path) -> None:
    old = checkpoint_config(state, path)
    for key in ("arch", "input_px", "output_scale", "crops", "target", "val_fraction", "seed"):
        if getattr(old, key) != getattr(cfg, key):
            raise CheckpointError(f"{path}: cannot resume, checkpoint has {key}={getattr(old, key)!r} but this "
                                  f"run asks for {key}={getattr(cfg, key)!r} (use a new --out)")


def _step_um(samples: list[Sample], pool, state: dict | None, source: str) -> float:
    """Return the step size (um) of the training data.

    The dataset's stack.yaml, which the synthetic pool and a resumed checkpoint must match.
    """
    step_um = dataset_step_um(samples, source)
    synthetic = None if pool is None else float(pool.optics.step_um)
    step_um = synthetic if step_um is None else step_um
    if synthetic is not None and synthetic != step_um:
        raise DatasetError(f"{source}: stacks have step_um {step_um} but the synthetic samples {synthetic}")
    if state is not None and state.get("step_um", step_um) != step_um:
        raise CheckpointError(f"cannot resume: the checkpoint was trained on step_um {state['step_um']}, "
                              f"this data has {step_um}")
    return step_um


def train(dataset: Path, cfg: TrainConfig, out: Path, resume: bool = False) -> dict:
    """Train per ``cfg`` on ``dataset`` (plus on-the-fly synthetic samples); returns the run summary."""
    cfg.validate()
    out = Path(out)
    last_path, best_path = out / LAST, out / BEST
    state = None
    if last_path.exists():
        if not resume:
            raise CheckpointError(f"{last_path} exists: pass --resume to continue it, or choose a new --out")
        state = load_checkpoint(last_path)
        _check_resume(state, cfg, last_path)
    device = resolve_device(cfg.device)
    model = create_model(cfg.arch, pretrained=cfg.pretrained and state is None)
    spec = PreprocessSpec(input_px=cfg.input_px)

    samples = load_samples(dataset, cfg.target)
    train_plates, val_plates = split_plates(samples, cfg.val_fraction, cfg.seed, str(dataset))
    train_samples = [s for s in samples if s.plate in set(train_plates) and (cfg.crops or s.kind == "full")]
    val_samples = _subsample([s for s in samples if s.plate in set(val_plates)], cfg.max_val_samples)
    if not train_samples and cfg.synthetic_train == 0:
        raise DatasetError(f"{dataset}: no training images (train plates {train_plates}"
                           f"{'' if cfg.crops else ', crops excluded'}) and --synthetic-train is 0")
    out.mkdir(parents=True, exist_ok=True)
    (out / "split.json").write_text(json.dumps({"dataset": str(dataset), "train_plates": train_plates,
                                                "val_plates": val_plates}, indent=2))

    train_set = cache_images(train_samples, spec, "cache train")
    val_set = cache_images(val_samples, spec, "cache val")
    if len(val_set) == 0:
        raise DatasetError(f"{dataset}: no readable validation images on plates {val_plates}")
    pool = None
    if cfg.synthetic_train:
        from .synthetic import SyntheticPool

        pool = SyntheticPool(cfg, spec)
    train_kinds = set(train_set.kinds)
    if pool is not None:
        train_kinds |= {"full"} if not cfg.crops or cfg.synthetic_crop_fraction < 1 else set()
        train_kinds |= {"crop"} if cfg.crops and cfg.synthetic_crop_fraction > 0 else set()
    step_um = _step_um(train_samples + val_samples, pool, state, str(dataset))
    synth_desc = "" if pool is None else json.dumps(pool.describe(), sort_keys=True)
    train_hash = data_hash(train_samples, synth_desc)

    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step_epochs, gamma=cfg.lr_gamma)
    loss_fn = _loss_fn(cfg.loss)
    start_epoch, best_mae, history = 0, math.inf, []
    if state is not None:
        load_weights(model, state["model"], last_path, cfg.arch)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"])
        best_mae = state["best_val_mae_steps"] if state["best_val_mae_steps"] is not None else math.inf
        history = list(state["history"])
        _log(f"resuming {last_path} after epoch {start_epoch}")

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        rng = np.random.default_rng([cfg.seed, epoch])
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        if pool is not None:
            pool.update(epoch)
        train_loss = train_epoch(model, optimizer, loss_fn, train_set, pool, cfg, rng, device, epoch)
        scheduler.step()
        val = validate(model, val_set, cfg, device)
        mae = val["all"]["mae_steps"]
        entry = {"epoch": epoch + 1, "train_loss": train_loss, "val_mae_steps": mae,
                 "val_sign_accuracy": val["all"]["sign_accuracy"], "lr": optimizer.param_groups[0]["lr"],
                 "epoch_s": time.perf_counter() - t0,
                 **{f"val_mae_{k}_steps": v["mae_steps"] for k, v in val.items() if k != "all"}}
        history.append(entry)
        improved = mae < best_mae
        best_mae = min(best_mae, mae)
        ckpt = {"format": FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "config": cfg.to_dict(),
                "best_val_mae_steps": best_mae, "val_mae_steps": mae, "val": val, "history": history,
                "train_data_hash": train_hash, "input_view": _input_view(train_kinds), "step_um": step_um,
                "train_plates": train_plates, "val_plates": val_plates}
        if improved:
            save_checkpoint(ckpt, best_path)
        save_checkpoint(ckpt, last_path)
        (out / "history.json").write_text(json.dumps(history, indent=2))
        sign = val["all"]["sign_accuracy"]
        _log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.4f}, val MAE {mae:.2f} steps"
             + "".join(f" ({k} {v['mae_steps']:.2f})" for k, v in val.items() if k != "all")
             + (f", sign acc {sign:.3f}" if sign is not None else "")
             + f", lr {entry['lr']:.2e}, {entry['epoch_s']:.0f} s" + (" *best*" if improved else ""))
    return {"out": str(out), "best": str(best_path), "last": str(last_path), "best_val_mae_steps": best_mae,
            "epochs": cfg.epochs, "history": history, "train_images": len(train_set),
            "val_images": len(val_set), "train_plates": train_plates, "val_plates": val_plates}


def train_epoch(model, optimizer, loss_fn, train_set: ImageSet, pool, cfg: TrainConfig,
                rng: np.random.Generator, device: torch.device, epoch: int) -> float:
    """One pass over the cached images and the synthetic pool; mean training loss."""
    sources = [train_set] + ([pool.images_set()] if pool is not None else [])
    index = [(si, i) for si, src in enumerate(sources) for i in range(len(src))]
    order = rng.permutation(len(index))
    model.train()
    total, count = 0.0, 0
    n_batches = math.ceil(len(order) / cfg.batch_size)
    bar = tqdm(range(n_batches), desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", file=sys.stderr, leave=False)
    for b in bar:
        picks = [index[k] for k in order[b * cfg.batch_size:(b + 1) * cfg.batch_size]]
        if len(picks) < 2 and n_batches > 1:  # a batch of 1 breaks BatchNorm; drop the remainder
            continue
        x = np.stack([augment(sources[si].images[i].astype(np.float32), rng, cfg.rotation_deg, cfg.hflip, cfg.vflip)
                      for si, i in picks])
        y = np.array([sources[si].offsets_steps[i] for si, i in picks], dtype=np.float32) / cfg.output_scale
        xt = torch.from_numpy(x[:, None]).to(device)
        yt = torch.from_numpy(y[:, None]).to(device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(xt), yt)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch + 1}, batch {b}; "
                                     "lower --lr or check the data")
        loss.backward()
        optimizer.step()
        total += loss.item() * len(picks)
        count += len(picks)
        bar.set_postfix(loss=f"{total / count:.4f}")
    bar.close()
    return total / max(count, 1)
