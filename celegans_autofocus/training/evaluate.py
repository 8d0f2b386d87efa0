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

"""Evaluation of focus models on a labelled dataset: error table, field-of-view table, paired test, plot.

Models are ONNX files (served through :class:`core.predictor.FocusPredictor`, exactly what ships)
or training checkpoints (``.pt``, through torch with the same preprocessing). Errors are in steps
against each image's target (the simulator's truth where ``stack.yaml`` has it, else the label).
"""
from __future__ import annotations

import csv
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
from tqdm import tqdm

from ..core.detection import crop_image, crop_window
from ..core.images import PreprocessSpec
from ..core.metrics import IN_FOCUS_STEPS, error_summary
from ..core.sensor import STEP_UM
from .data import DatasetError, Sample, load_samples, read_gray, stack_meta
from .stats import paired_comparison

FOV_SIZES_PX = (500, 750, 1000, 1250)
KINDS = ("full", "crop", "all")


@dataclass
class Model:
    """A named predictor: list of grayscale frames -> offsets in steps."""

    name: str
    path: Path
    spec: PreprocessSpec
    predict_batch: Callable[[Sequence[np.ndarray]], np.ndarray]
    info: dict = field(default_factory=dict)


def load_model(path: Path | str, device: str = "cpu", threads: int = 0) -> Model:
    """Load an ONNX model (FocusPredictor) or a ``.pt`` checkpoint (torch) as a :class:`Model`."""
    path = Path(path)
    from ..core.predictor import FocusPredictor, is_onnx_model

    if is_onnx_model(path):
        predictor = FocusPredictor(path, providers="auto" if device != "cpu" else ["CPUExecutionProvider"],
                                   intra_op_threads=threads)
        return Model(path.name, path, predictor.spec, predictor.predict_batch, dict(predictor.metadata))
    from ..core.images import preprocess
    from .checkpoint import model_from_checkpoint
    from .infer import predict_steps, resolve_device

    net, state, cfg = model_from_checkpoint(path)
    torch_device = resolve_device(device)
    net.to(torch_device)
    spec = cfg.spec

    def predict(grays: Sequence[np.ndarray]) -> np.ndarray:
        images = np.stack([preprocess(g, spec) for g in grays]) if len(grays) else np.zeros((0, 1, 1))
        return predict_steps(net, images, cfg.output_scale, torch_device)

    return Model(path.name, path, spec, predict, {"arch": cfg.arch, "epochs": state.get("epoch"),
                                                  "val_mae_steps": state.get("best_val_mae_steps")})


def _worm_centre(root: Path, sample: Sample, cache: dict) -> tuple[float, float] | None:
    """Centroid (x, y) px of the first worm listed in the stack's ``stack.yaml`` (synthetic data)."""
    key = (sample.plate, sample.stack)
    if key not in cache:
        worms = stack_meta(root, sample.plate, sample.stack).get("worms") or []
        centre = worms[0].get("centroid_px") if worms and isinstance(worms[0], dict) else None
        cache[key] = (float(centre[0]), float(centre[1])) if centre else None
    return cache[key]


def evaluate(model_paths: Sequence[Path], dataset: Path, plates: Sequence[str] | None = None,
             fov_sizes_px: Sequence[int] = FOV_SIZES_PX, target: str = "auto", device: str = "cpu",
             batch_size: int = 16, max_images: int = 0) -> dict:
    """Predict every image of ``dataset`` (optionally only ``plates``) with each model.

    Returns ``{"models", "records", "table", "fov_table", "paired"}``: per-image records, the
    error summary per model and kind, the field-of-view table of the first model on the full
    frames whose ``stack.yaml`` locates a worm, and the paired test of models 1 and 2.
    """
    if not model_paths:
        raise ValueError("no model given")
    models = [load_model(p, device) for p in model_paths]
    samples = load_samples(dataset, target)
    if plates:
        unknown = sorted(set(plates) - {s.plate for s in samples})
        if unknown:
            raise DatasetError(f"{dataset}: plates {unknown} not in labels.csv")
        samples = [s for s in samples if s.plate in set(plates)]
    if max_images and len(samples) > max_images:
        samples = [samples[i] for i in np.linspace(0, len(samples) - 1, max_images).round().astype(int)]
    names = _unique_names(models)
    records: list[dict] = []
    fov_records: list[dict] = []
    centres: dict = {}
    for start in tqdm(range(0, len(samples), batch_size), desc="evaluate", unit="batch", file=sys.stderr):
        batch, grays = [], []
        for s in samples[start:start + batch_size]:
            try:
                grays.append(read_gray(s.path))
                batch.append(s)
            except DatasetError as exc:
                tqdm.write(f"skipped: {exc}", file=sys.stderr)
        if not batch:
            continue
        preds = [m.predict_batch(grays) for m in models]
        for i, s in enumerate(batch):
            rec = {"plate": s.plate, "stack": s.stack, "file": s.path.name, "z_index": s.z_index, "kind": s.kind,
                   "fov_px": s.fov_px, "true_steps": s.offset_steps}
            rec.update({f"pred_{n}": float(p[i]) for n, p in zip(names, preds)})
            records.append(rec)
        fov_records.extend(_fov_batch(models[0], Path(dataset), batch, grays, fov_sizes_px, centres, preds[0]))
    if not records:
        raise DatasetError(f"{dataset}: no readable images to evaluate")
    result = {
        "dataset": str(dataset),
        "models": [{"name": n, "path": str(m.path), **{k: m.info.get(k) for k in ("arch", "epochs", "val_mae_steps")}}
                   for n, m in zip(names, models)],
        "table": summary_table(records, names),
        "fov_table": fov_table(fov_records, fov_sizes_px),
        "fov_model": names[0],
        "records": records,
        "paired": paired_tables(records, names[0], names[1]) if len(models) > 1 else None,
    }
    return result


def _unique_names(models: Sequence[Model]) -> list[str]:
    names = []
    for m in models:
        name = m.name
        while name in names:
            name = f"{m.path.parent.name}/{name}" if "/" not in name else f"{name}'"
        names.append(name)
    return names


def _fov_batch(model: Model, root: Path, batch: list[Sample], grays: list[np.ndarray],
               fov_sizes_px: Sequence[int], centres: dict, full_pred_steps: np.ndarray) -> list[dict]:
    """Crops of each full frame around its worm at every size, predicted; plus the full frame itself."""
    rows, crops, full_rows = [], [], []
    for s, gray, full_pred in zip(batch, grays, full_pred_steps):
        if s.kind != "full":
            continue
        centre = _worm_centre(root, s, centres)
        if centre is None:
            continue
        full_rows.append({"fov": "full", "true_steps": s.offset_steps, "pred_steps": float(full_pred)})
        for fov in fov_sizes_px:
            crops.append(crop_image(gray, crop_window(centre, int(fov), gray.shape)))
            rows.append({"fov": str(fov), "true_steps": s.offset_steps})
    if crops:
        for row, pred in zip(rows, model.predict_batch(crops)):
            row["pred_steps"] = float(pred)
    return rows + full_rows


def summary_table(records: list[dict], names: Sequence[str]) -> list[dict]:
    """One row per (model, kind) with :data:`SUMMARY_COLUMNS`."""
    rows = []
    for name in names:
        for kind in KINDS:
            sel = [r for r in records if kind == "all" or r["kind"] == kind]
            if not sel:
                continue
            true = np.array([r["true_steps"] for r in sel])
            s = error_summary(np.array([r[f"pred_{name}"] for r in sel]) - true, true)
            rows.append({"model": name, "kind": kind, **s})
    return rows


def fov_table(fov_records: list[dict], fov_sizes_px: Sequence[int]) -> list[dict]:
    """Error summary per crop size, then ``full`` (the same frames uncropped)."""
    rows = []
    for fov in [str(f) for f in fov_sizes_px] + ["full"]:
        sel = [r for r in fov_records if r["fov"] == fov]
        if sel:
            true = np.array([r["true_steps"] for r in sel])
            rows.append({"fov_px": fov, **error_summary(np.array([r["pred_steps"] for r in sel]) - true, true)})
    return rows


def paired_tables(records: list[dict], a: str, b: str) -> dict:
    """Paired test of models ``a`` and ``b`` on absolute errors, per kind."""
    out = {"a": a, "b": b}
    for kind in KINDS:
        sel = [r for r in records if kind == "all" or r["kind"] == kind]
        if len(sel) < 3:
            continue
        true = np.array([r["true_steps"] for r in sel])
        out[kind] = paired_comparison(np.abs(np.array([r[f"pred_{a}"] for r in sel]) - true),
                                      np.abs(np.array([r[f"pred_{b}"] for r in sel]) - true))
    return out


def format_table(rows: list[dict], columns: Sequence[str]) -> str:
    """Fixed-width text table; floats with 2 decimals (3 for accuracies), None as '-'."""
    def cell(key: str, value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            if key.endswith("_p"):
                return f"{value:.3g}"
            return f"{value:.3f}" if "accuracy" in key or "fraction" in key else f"{value:.2f}"
        return str(value)

    body = [[cell(c, r.get(c)) for c in columns] for r in rows]
    widths = [max(len(c), *(len(b[i]) for b in body)) if body else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    lines += ["  ".join(v.ljust(w) for v, w in zip(b, widths)) for b in body]
    return "\n".join(lines)


def write_outputs(result: dict, out_dir: Path) -> dict[str, Path]:
    """``evaluation.json``, ``predictions.csv`` and ``pred_vs_true.png`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"json": out_dir / "evaluation.json", "csv": out_dir / "predictions.csv",
             "png": out_dir / "pred_vs_true.png"}
    summary = {k: v for k, v in result.items() if k != "records"}
    paths["json"].write_text(json.dumps(summary, indent=2))
    with paths["csv"].open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(result["records"][0]))
        writer.writeheader()
        writer.writerows(result["records"])
    plot_pred_vs_true(result, paths["png"])
    return paths


def plot_pred_vs_true(result: dict, path: Path) -> Path:
    """Scatter of predicted against true offset per model, full frames and crops in two colours."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [m["name"] for m in result["models"]]
    records = result["records"]
    fig, axes = plt.subplots(1, len(names), figsize=(5.2 * len(names), 5), squeeze=False)
    true = np.array([r["true_steps"] for r in records])
    lim = float(np.abs(true).max()) * 1.1 + 1
    for ax, name in zip(axes[0], names):
        for kind, colour in (("full", "tab:blue"), ("crop", "tab:orange")):
            sel = [r for r in records if r["kind"] == kind]
            if sel:
                mae = np.mean([abs(r[f"pred_{name}"] - r["true_steps"]) for r in sel])
                ax.plot([r["true_steps"] for r in sel], [r[f"pred_{name}"] for r in sel], ".", ms=3,
                        alpha=0.5, color=colour, label=f"{kind} (n={len(sel)}, MAE {mae:.1f})")
        ax.plot([-lim, lim], [-lim, lim], "k--", lw=1, label="ideal")
        ax.axhspan(-IN_FOCUS_STEPS, IN_FOCUS_STEPS, color="tab:green", alpha=0.1)
        ax.set_xlim(-lim, lim)
        ax.set_ylim(-lim, lim)
        ax.set_xlabel(f"true offset (steps, 1 step = {STEP_UM:g} um)")
        ax.set_ylabel("predicted offset (steps)")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
