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

"""The training loop: split by plate, load lazily, train through a DataLoader, validate, checkpoint, resume.

Files in ``out``: ``last.pt`` (every epoch, atomic; ``--resume`` continues from it), ``best.pt``
(lowest validation MAE), ``history.json``, ``split.json`` (train/validation plates) and, with synthetic
samples, ``pool.npz`` (the rendered pool, so that a resume need not render it all again; a fresh run also
takes a ``pool.npz`` of its recipe found in ``out``, so runs of several architectures can share one render).
Every random draw is seeded from (seed, epoch[, index]) (:mod:`training.datasets`, :mod:`training.synthetic`),
so a resumed run draws the same samples and augmentations as an uninterrupted one, and a DDP run under
``torchrun`` (:mod:`training.distributed`) the same global batches as one process.
Without a dataset, training uses the synthetic pool and validates on ``synthetic_val`` held-out renders.
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
from ..core.metrics import error_summary
from . import distributed
from .checkpoint import (FORMAT, FROZEN_NORMS, CheckpointError, checkpoint_config, load_checkpoint, load_weights,
                         save_checkpoint)
from .config import RESUMABLE, STEP_SCHEDULE_ONLY, ConfigError, TrainConfig
from .data import DatasetError, ImageSet, Sample, data_hash, dataset_step_um, load_samples, read_gray, split_plates
from .datasets import ArrayImages, ImageFiles, TrainSamples, train_loader
from .infer import predict_outputs, resolve_device
from .models import create_model
from .parent import load_parent
from .provenance import source_commit
from .synthetic import SyntheticPool

LAST, BEST, POOL = "last.pt", "best.pt", "pool.npz"
#: Within this many predicted sigmas a calibrated Gaussian holds 95.4% of the errors.
CALIBRATION_SIGMAS = 2.0
#: the Huber loss is quadratic within this many output units (10 steps at output_scale 100)
HUBER_DELTA = 0.1
#: huber_nll: the log-variance's gradient into the shared layers, relative to the mean's (AdamW, or Adam without
#: weight decay: Adam's L2 term would outweigh the scaled gradient)
VAR_GRAD_SCALE = 1e-3


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


def _subsample(samples: list, limit: int) -> list:
    if not limit or len(samples) <= limit:
        return samples
    idx = np.linspace(0, len(samples) - 1, limit).round().astype(int)
    return [samples[i] for i in idx]


def _input_view(kinds: set[str]) -> str:
    return "mixed" if len(kinds) > 1 else (next(iter(kinds)) if kinds else "mixed")


def validate(model: torch.nn.Module, val: ImageSet, cfg: TrainConfig, device: torch.device,
             dist_ctx: distributed.DistContext | None = None) -> dict:
    """Return the validation summary: overall plus per kind (full/crop).

    With the uncertainty head, ``within_2sigma`` is the share of errors within the predicted 2 sigma.
    Under DDP each rank predicts its share of the images and all ranks get the whole summary.
    """
    rank, world = (0, 1) if dist_ctx is None else (dist_ctx.rank, dist_ctx.world_size)
    mine = np.arange(rank, len(val), world)
    pred, sigma = predict_outputs(model, val.images[mine], cfg.output_scale, device,
                                  batch_size=max(cfg.batch_size, 16))
    parts = distributed.all_gather((mine, pred, sigma), dist_ctx)
    order = np.concatenate([p[0] for p in parts])
    pred = np.empty(len(val))
    pred[order] = np.concatenate([p[1] for p in parts])
    if sigma is not None:
        sigma = np.empty(len(val))
        sigma[order] = np.concatenate([p[2] for p in parts])
    kinds = np.asarray(val.kinds)
    out = {}
    for kind, mask in (("all", np.ones(len(val), bool)), ("full", kinds == "full"), ("crop", kinds == "crop")):
        if mask.any():
            err = pred[mask] - val.offsets_steps[mask]
            out[kind] = error_summary(err, val.offsets_steps[mask])
            if sigma is not None:
                out[kind]["within_2sigma"] = float(np.mean(np.abs(err) <= CALIBRATION_SIGMAS * sigma[mask]))
    return out


def loss_fn(cfg: TrainConfig):
    """``loss(output (N, outputs), target (N, 1))`` of the config, a scalar mean over the batch.

    ``gaussian_nll``: 0.5 * (log_var + (y - mean)^2 / var) (constant dropped), each term weighted by
    ``var.detach() ** nll_beta`` (beta-NLL; 0 = plain NLL). ``huber``: quadratic within ``HUBER_DELTA`` output units.
    ``huber_nll``: the Huber loss of the mean plus the NLL of the log-variance with the mean detached, and the
    log-variance's gradient scaled by ``VAR_GRAD_SCALE`` on its way back: the shared layers learn the mean alone,
    while Adam's per-parameter step size keeps the log-variance's own head weights learning at full rate
    (after Stirn et al. 2023, "Faithful heteroscedastic regression with neural networks", which stops that gradient).
    """
    if cfg.loss == "mse":
        return torch.nn.MSELoss()
    huber = torch.nn.HuberLoss(delta=HUBER_DELTA)
    if cfg.loss == "huber":
        return huber
    beta = cfg.nll_beta

    def nll(mean: torch.Tensor, log_var: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        log_var = log_var.clamp(-20.0, 20.0)
        terms = 0.5 * (log_var + (target - mean) ** 2 * torch.exp(-log_var))
        return terms * torch.exp(log_var.detach() * beta) if beta else terms

    def gaussian_nll(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nll(output[:, :1], output[:, 1:2], target).mean()

    def huber_nll(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        mean, log_var = output[:, :1], output[:, 1:2]
        log_var = log_var.detach() + VAR_GRAD_SCALE * (log_var - log_var.detach())  # same value, gradient scaled
        return huber(mean, target) + nll(mean.detach(), log_var, target).mean()

    return huber_nll if cfg.loss == "huber_nll" else gaussian_nll


def _check_resume(state: dict, cfg: TrainConfig, path: Path) -> None:
    old = checkpoint_config(state, path)
    unused = STEP_SCHEDULE_ONLY if "step" not in (old.schedule, cfg.schedule) else ()
    for key, value in cfg.to_dict().items():
        if key not in RESUMABLE + unused and old.to_dict()[key] != value:
            raise CheckpointError(f"{path}: cannot resume, checkpoint has {key}={old.to_dict()[key]!r} but this "
                                  f"run asks for {key}={value!r} (use a new --out)")
    if old.epochs != cfg.epochs and cfg.schedule != "step":
        raise CheckpointError(f"{path}: cannot resume with epochs={cfg.epochs}: the {cfg.schedule} schedule "
                              f"spans the checkpoint's epochs={old.epochs} (only the step schedule can be extended)")


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


def make_optimizer(model: torch.nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)


def make_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """Return (scheduler, per_step) of ``cfg.schedule``.

    ``step``: StepLR by epoch; ``onecycle`` (peak ``lr``, 10% warm-up) and ``cosine`` (from ``lr`` to 0) by
    optimizer step over all epochs.
    """
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total, pct_start=0.1), True
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, total), True
    return torch.optim.lr_scheduler.StepLR(optimizer, step_size=cfg.lr_step_epochs, gamma=cfg.lr_gamma), False


def _check_real_frames(folder: Path) -> None:
    """Raise :class:`DatasetError` unless ``folder`` (``--real-frames``) exists and holds images."""
    from ..core.real_frames import image_folders

    if not folder.is_dir():
        raise DatasetError(f"{folder}: --real-frames folder not found")
    if not image_folders(folder):
        raise DatasetError(f"{folder}: --real-frames holds no images")


def _real_set(cfg: TrainConfig, spec: PreprocessSpec) -> dict[str, np.ndarray]:
    """Per source of ``cfg.real_frames``, its detector crops preprocessed (sources without a worm left out)."""
    from ..core.real_frames import worm_crops

    fov = cfg.real_frames_fov_px
    found = {name: (n, crops[fov]) for name, (n, crops) in worm_crops(Path(cfg.real_frames), [fov]).items()}
    _log("real frames: " + ", ".join(f"{name} {len(crops)} worms in {n} frames" for name, (n, crops) in found.items()))
    return {name: np.stack([preprocess(c, spec) for c in crops]) for name, (_, crops) in found.items() if crops}


def _real_medians(model: torch.nn.Module, real: dict[str, np.ndarray], cfg: TrainConfig,
                  device: torch.device) -> dict[str, float]:
    """Return the model's median answer in steps on each source's real crops."""
    return {name: float(np.median(predict_outputs(model, images, cfg.output_scale, device)[0]))
            for name, images in real.items()}


def _val_set(dataset: Path | None, val_samples: list[Sample], cfg: TrainConfig, spec: PreprocessSpec,
             dist_ctx) -> ImageSet:
    """Return the validation images: the held-out plates (cached), plus ``synthetic_val`` held-out renders."""
    sets = []
    if val_samples:
        sets.append(cache_images(val_samples, spec, "cache val"))
    if cfg.synthetic_val:
        from .synthetic import SyntheticValidation

        sets.append(SyntheticValidation(cfg, spec, cfg.workers, dist_ctx).images_set())
    if not sets or sum(len(s) for s in sets) == 0:
        raise DatasetError(f"{dataset if dataset is not None else 'synthetic'}: no readable validation images "
                           "(give a dataset with validation plates, or --synthetic-val N)")
    return ImageSet(np.concatenate([s.images for s in sets]), np.concatenate([s.offsets_steps for s in sets]),
                    [k for s in sets for k in s.kinds])


def train(dataset: Path | str | None, cfg: TrainConfig, out: Path, resume: bool = False) -> dict:
    """Train per ``cfg`` on ``dataset`` (plus on-the-fly synthetic samples; None: synthetic only); run summary.

    Under ``torchrun`` (WORLD_SIZE > 1) this process is one rank of a DDP run; rank 0 writes the files.
    """
    cfg.validate()
    out = Path(out)
    last_path, best_path = out / LAST, out / BEST
    device = resolve_device(cfg.device)
    dist_ctx = distributed.init(device.type)
    try:
        return _train(None if dataset is None else Path(dataset), cfg, out, last_path, best_path, resume,
                      device, dist_ctx)
    finally:
        distributed.close(dist_ctx)


def _init_weights(model: torch.nn.Module, cfg: TrainConfig) -> bool:
    """Start from ``cfg.init``'s weights; returns whether its BatchNorms stay frozen (:data:`FROZEN_NORMS`).

    Its architecture and outputs (and an export's output_scale and input_px) must be this run's. An export's
    BatchNorms are folded into its convolutions, and so are those of a checkpoint of a run that started from one.
    Its input normalisation may differ (a z-scored export trained on ``contrast`` inputs): logged, not refused.
    """
    if not Path(cfg.init).is_file():
        raise CheckpointError(f"{cfg.init}: --init file not found")
    parent = load_parent(cfg.init)
    if cfg.init_is_export:
        found = (parent.arch, parent.outputs, parent.output_scale, parent.spec.input_px)
        wanted = (cfg.arch, cfg.outputs, cfg.output_scale, cfg.input_px)
        if found != wanted:
            raise CheckpointError(f"{cfg.init}: --init needs (arch, outputs, output_scale, input_px) {wanted}, the "
                                  f"export has {found}")
    elif (parent.arch, parent.outputs) != (cfg.arch, cfg.outputs):
        raise CheckpointError(f"{cfg.init}: --init needs arch {cfg.arch!r} with {cfg.outputs} output(s), the "
                              f"checkpoint has {parent.arch!r} with {parent.outputs}")
    if parent.spec.normalize != cfg.normalize:
        _log(f"--init {cfg.init}: its input was normalised by {parent.spec.normalize}; this run trains it on "
             f"{cfg.normalize} inputs")
    model.load_state_dict(parent.model.state_dict())
    return parent.frozen_norms


def _train(dataset: Path | None, cfg: TrainConfig, out: Path, last_path: Path, best_path: Path, resume: bool,
           device: torch.device, dist_ctx) -> dict:
    world = 1 if dist_ctx is None else dist_ctx.world_size
    rank = 0 if dist_ctx is None else dist_ctx.rank
    main_rank = dist_ctx is None or dist_ctx.main
    commit = source_commit() if main_rank else ""  # first: the code as it was when the run started
    if cfg.batch_size % world:
        raise ConfigError(f"batch_size {cfg.batch_size} (the global batch) must be divisible by the "
                          f"{world} processes")
    if dist_ctx is not None and device.type == "cuda":
        device = torch.device("cuda", dist_ctx.local_rank)
    if cfg.real_frames:  # every rank, before anything is written or rendered
        _check_real_frames(Path(cfg.real_frames))
    state = None
    if last_path.exists():
        if not resume:
            raise CheckpointError(f"{last_path} exists: pass --resume to continue it, or choose a new --out")
        state = load_checkpoint(last_path)
        _check_resume(state, cfg, last_path)
    torch.manual_seed(cfg.seed)  # the initial weights
    model = create_model(cfg.arch, pretrained=cfg.pretrained and state is None, outputs=cfg.outputs)
    # a run resumed: as it started (checkpoints written before FROZEN_NORMS existed: by its init's kind)
    frozen_norms = bool(state.get(FROZEN_NORMS, cfg.init_is_export)) if state is not None else False
    if cfg.init and state is None:
        frozen_norms = _init_weights(model, cfg)
    spec = cfg.spec

    if dataset is not None:
        samples = load_samples(dataset, cfg.target)
        train_plates, val_plates = split_plates(samples, cfg.val_fraction, cfg.seed, str(dataset))
    else:
        samples, train_plates, val_plates = [], [], []
    train_samples = [s for s in samples if s.plate in set(train_plates) and (cfg.crops or s.kind == "full")]
    val_samples = _subsample([s for s in samples if s.plate in set(val_plates)], cfg.max_val_samples)
    if not train_samples and cfg.synthetic_train == 0:
        raise DatasetError(f"{dataset}: no training images (train plates {train_plates}"
                           f"{'' if cfg.crops else ', crops excluded'}) and --synthetic-train is 0")
    if main_rank:
        out.mkdir(parents=True, exist_ok=True)
        (out / "split.json").write_text(json.dumps({"dataset": None if dataset is None else str(dataset),
                                                    "train_plates": train_plates, "val_plates": val_plates},
                                                   indent=2))

    val_set = _val_set(dataset, val_samples, cfg, spec, dist_ctx)
    real = _real_set(cfg, spec) if cfg.real_frames and main_rank else {}
    pool = SyntheticPool(cfg, spec) if cfg.synthetic_train else None
    files = ImageFiles(train_samples, spec)
    train_set = TrainSamples([files] + ([ArrayImages(pool.images_set())] if pool is not None else []), cfg)
    train_kinds = set(files.kinds)
    if pool is not None:
        train_kinds |= {"full"} if pool.recipe.crop_fraction < 1 else set()
        train_kinds |= {"crop"} if pool.recipe.crop_fraction > 0 else set()
    step_um = _step_um(train_samples + val_samples, pool, state, str(dataset))
    synth_desc = "" if pool is None else json.dumps(pool.describe(), sort_keys=True)
    train_hash = data_hash(train_samples, synth_desc)
    loader = train_loader(train_set, cfg, rank, world)

    model.to(device)
    net = distributed.wrap(model, dist_ctx, device)
    optimizer = make_optimizer(model, cfg)
    scheduler, per_step = make_scheduler(optimizer, cfg, len(loader))
    criterion = loss_fn(cfg)
    start_epoch, best_mae, history = 0, math.inf, []
    if state is not None:
        load_weights(model, state["model"], last_path, cfg.arch)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"])
        best_mae = state["best_val_mae_steps"] if state["best_val_mae_steps"] is not None else math.inf
        history = list(state["history"])
    pool_note = ""
    if pool is not None and (state is not None or (out / POOL).exists()):
        # all ranks or none: else their shares of the views to render would differ; a fresh run takes a pool
        # of this recipe placed in --out (e.g. one rendered once for several architectures)
        loaded = all(distributed.all_gather(pool.load(out / POOL), dist_ctx))
        if not loaded:
            pool.forget()
        pool_note = " (saved pool taken)" if loaded else " (pool rendered anew)"
    if main_rank and state is not None:
        _log(f"resuming {last_path} after epoch {start_epoch}{pool_note}")
    elif main_rank and pool_note:
        _log(f"fresh run{pool_note}")

    for epoch in range(start_epoch, cfg.epochs):
        t0 = time.perf_counter()
        torch.manual_seed(cfg.seed * 100_003 + epoch)
        if pool is not None and pool.update(epoch, cfg.workers, dist_ctx) and main_rank:
            pool.save(out / POOL)
        train_loss = train_epoch(net, optimizer, criterion, loader, cfg, device, epoch, scheduler if per_step else None,
                                 dist_ctx, frozen_norms=frozen_norms)
        if not per_step:
            scheduler.step()
        val = validate(model, val_set, cfg, device, dist_ctx)
        mae = val["all"]["mae_steps"]
        entry = {"epoch": epoch + 1, "train_loss": train_loss, "val_mae_steps": mae,
                 "val_sign_accuracy": val["all"]["sign_accuracy"], "lr": optimizer.param_groups[0]["lr"],
                 "epoch_s": time.perf_counter() - t0,
                 **{f"val_mae_{k}_steps": v["mae_steps"] for k, v in val.items() if k != "all"}}
        if cfg.uncertainty:
            entry["val_within_2sigma"] = val["all"]["within_2sigma"]
        if real:
            entry["real_median_steps"] = _real_medians(model, real, cfg, device)
        history.append(entry)
        improved = mae < best_mae
        best_mae = min(best_mae, mae)
        if main_rank:
            ckpt = {"format": FORMAT, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "scheduler": scheduler.state_dict(), "epoch": epoch + 1, "config": cfg.to_dict(),
                    "best_val_mae_steps": best_mae, "val_mae_steps": mae, "val": val, "history": history,
                    "train_data_hash": train_hash, "input_view": _input_view(train_kinds), "step_um": step_um,
                    "train_plates": train_plates, "val_plates": val_plates, "world_size": world,
                    "source_commit": commit, FROZEN_NORMS: frozen_norms}
            if improved:
                save_checkpoint(ckpt, best_path)
            save_checkpoint(ckpt, last_path)
            (out / "history.json").write_text(json.dumps(history, indent=2))
            sign = val["all"]["sign_accuracy"]
            _log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {train_loss:.4f}, val MAE {mae:.2f} steps"
                 + "".join(f" ({k} {v['mae_steps']:.2f})" for k, v in val.items() if k != "all")
                 + (f", sign acc {sign:.3f}" if sign is not None else "")
                 + (f", within 2 sigma {entry['val_within_2sigma']:.3f}" if cfg.uncertainty else "")
                 + "".join(f", real {k} {v:+.1f}" for k, v in entry.get("real_median_steps", {}).items())
                 + f", lr {entry['lr']:.2e}, {entry['epoch_s']:.0f} s" + (" *best*" if improved else ""))
        distributed.barrier(dist_ctx)
    return {"out": str(out), "best": str(best_path), "last": str(last_path), "best_val_mae_steps": best_mae,
            "epochs": cfg.epochs, "history": history, "train_images": len(files),
            "synthetic_train": cfg.synthetic_train, "val_images": len(val_set), "train_plates": train_plates,
            "val_plates": val_plates, "world_size": world, "rank": rank}


def freeze_norms(model: torch.nn.Module) -> None:
    """Put every BatchNorm of ``model`` in eval mode: its running statistics are used and stay as they are."""
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.eval()


def train_epoch(model: torch.nn.Module, optimizer: torch.optim.Optimizer, loss_fn, loader, cfg: TrainConfig,
                device: torch.device, epoch: int, scheduler=None, dist_ctx=None, frozen_norms: bool = False) -> float:
    """One pass over ``loader`` (a :func:`datasets.train_loader`); the mean training loss over all ranks.

    ``scheduler`` (per-step schedules) steps after every optimizer step. ``frozen_norms``: BatchNorm layers
    keep their statistics (:func:`freeze_norms`; fine-tuning).
    """
    loader.sampler.set_epoch(epoch)
    loader.dataset.set_epoch(epoch)
    model.train()
    if frozen_norms:
        freeze_norms(model)
    total, count = 0.0, 0
    main_rank = dist_ctx is None or dist_ctx.main
    bar = tqdm(loader, desc=f"epoch {epoch + 1}/{cfg.epochs}", unit="batch", file=sys.stderr, leave=False,
               disable=not main_rank)
    for b, (x, y) in enumerate(bar):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(x), y)
        if not torch.isfinite(loss):
            raise FloatingPointError(f"training loss became {loss.item()} at epoch {epoch + 1}, batch {b}; "
                                     "lower --lr or check the data")
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item() * len(x)
        count += len(x)
        bar.set_postfix(loss=f"{total / count:.4f}")
    bar.close()
    total, count = distributed.all_sum([total, count], dist_ctx)
    return total / max(count, 1)
