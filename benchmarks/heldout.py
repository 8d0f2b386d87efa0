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

"""Held-out synthetic renders for the paper's studies, and the errors of ONNX models on them.

``views`` random scenes of ``seed`` (neither the training seed 0 nor the validation seed 999), each seen
through one window, imaged at 10 offsets uniform in +-``range_steps``, rendered by the simulator's fast path
at 4/3 of the model's input size like the training pool (128 px for 96; training/synthetic.py,
``SyntheticValidation``). A window is a crop of
``fov_px`` around a worm (centre jittered by 8%), or the complete 2592x1944 frame (``fov_px`` 0). For every
crop size the same scenes, worms and offsets are drawn, so the rows of a field-of-view table are paired.
Renders are kept in ``cache`` (``heldout_<px>_<seed>_<views>_<fov>_r<render version>.npz``) so that the three
studies score exactly the same images; a renderer change (``training.synthetic.RENDER_VERSION``) renders anew.
Models are served through the exported ONNX file by ``FocusPredictor``.

    PYTHONPATH=. python benchmarks/heldout.py paired WITH_CROPS.onnx NO_CROPS.onnx --cache DIR --fov-px 500 0
    PYTHONPATH=. python benchmarks/heldout.py fov MODEL.onnx [...] --cache DIR --fov-px 500 750 1000 1250 0

Each model is scored on renders at its own input size (``fov`` may compare models of different input sizes).
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

from celegans_autofocus.core.images import PreprocessSpec
from celegans_autofocus.core.metrics import SIGN_THRESHOLD_STEPS

RENDER_OVERSAMPLE = 4 / 3  # render side / input side, as the training pools (synthetic_oversample)
#: lower edges of the |true offset| bins of summary()'s MAE by distance, in steps
DISTANCE_BINS_STEPS = (0, SIGN_THRESHOLD_STEPS, 50, 100, 150)
FULL = 0  # fov_px of the complete frame


def fov_name(fov_px: int) -> str:
    return "full frame" if fov_px == FULL else f"{fov_px} px crop"


def held_out(cache: Path, input_px: int, fov_px: int, views: int = 64, seed: int = 2024,
             range_steps: float = 200.0) -> tuple[np.ndarray, np.ndarray]:
    """(preprocessed float32 images (N, px, px), true offsets in steps (N,)) of one window size."""
    from celegans_autofocus.training.synthetic import RENDER_VERSION

    path = Path(cache) / f"heldout_{input_px}_{seed}_{views}_{fov_px}_r{RENDER_VERSION}.npz"
    if path.exists():
        with np.load(path) as data:
            return data["images"].astype(np.float32), data["offsets_steps"]
    from celegans_autofocus.training.config import TrainConfig
    from celegans_autofocus.training.synthetic import SyntheticValidation

    cfg = TrainConfig(input_px=input_px, crops=True, synthetic_crop_fraction=0.0 if fov_px == FULL else 1.0,
                      synthetic_offsets_per_view=10, synthetic_oversample=RENDER_OVERSAMPLE,
                      synthetic_crop_jitter=0.08, synthetic_val=views * 10, synthetic_val_seed=seed,
                      synthetic_val_fov_px=[fov_px or 500], synthetic_val_range_steps=range_steps)
    val = SyntheticValidation(cfg, PreprocessSpec(input_px=input_px))
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, images=val.images, offsets_steps=val.offsets_steps)
    return val.images.astype(np.float32), val.offsets_steps


@lru_cache(maxsize=None)
def _predictor(model: Path):
    """Return the ONNX ``model``'s one predictor (one ORT thread), opened once per run."""
    from celegans_autofocus.core.predictor import FocusPredictor

    return FocusPredictor(model, providers=["CPUExecutionProvider"], intra_op_threads=1)


def input_px(model: Path) -> int:
    """Return the input side in px of the ONNX ``model`` (from its metadata)."""
    return _predictor(Path(model)).spec.input_px


def predict(model: Path, images: np.ndarray) -> np.ndarray:
    """Offsets in steps predicted by the ONNX ``model`` (one ORT thread) for ``images`` preprocessed as ``held_out``."""
    predictor = _predictor(Path(model))
    if predictor.spec != PreprocessSpec(input_px=images.shape[-1]):
        raise ValueError(f"{model}: preprocessing {predictor.spec.to_dict()}; the held-out images are z-scored at "
                         f"{images.shape[-1]} px")
    return np.concatenate([predictor.predict_inputs(images[i:i + 64])[0] for i in range(0, len(images), 64)])


def summary(pred_steps: np.ndarray, true_steps: np.ndarray) -> dict:
    """Return MAE (overall, by |true offset| bin), median/p90 abs error, sign accuracy, predict-zero MAE."""
    err = np.abs(pred_steps - true_steps)
    far = np.abs(true_steps) > SIGN_THRESHOLD_STEPS
    distance, edges = np.abs(true_steps), DISTANCE_BINS_STEPS + (np.inf,)
    bins = {f"{lo:g}-{hi:g}": (distance >= lo) & (distance < hi) for lo, hi in zip(edges, edges[1:])}
    by_distance = {name: round(float(err[inside].mean()), 2) for name, inside in bins.items() if inside.any()}
    return {"n": int(len(err)), "mae_steps": round(float(err.mean()), 2),
            "median_abs_steps": round(float(np.median(err)), 2),
            "p90_abs_steps": round(float(np.percentile(err, 90)), 2),
            "sign_accuracy": round(float(np.mean(np.sign(pred_steps[far]) == np.sign(true_steps[far]))), 4),
            "predict_zero_mae_steps": round(float(np.abs(true_steps).mean()), 2),
            "mae_by_abs_offset_steps": by_distance}


def paired_table(model_a: Path, model_b: Path, cache: Path, fovs_px: list[int], views: int, seed: int) -> dict:
    """Study 2: per window size and over all, both models' errors and the paired test on |error| differences."""
    from celegans_autofocus.training.stats import paired_comparison

    side_px, side_b_px = input_px(model_a), input_px(model_b)
    if side_b_px != side_px:
        raise ValueError(f"paired models need one input size: {model_a} {side_px} px, {model_b} {side_b_px} px")
    rows, all_a, all_b, all_true = [], [], [], []
    for fov in fovs_px:
        images, true = held_out(cache, side_px, fov, views, seed)
        err_a, err_b = np.abs(predict(model_a, images) - true), np.abs(predict(model_b, images) - true)
        rows.append({"window": fov_name(fov), **paired_comparison(err_a, err_b),
                     "predict_zero_mae_steps": round(float(np.abs(true).mean()), 2)})
        all_a.append(err_a)
        all_b.append(err_b)
        all_true.append(true)
    true = np.concatenate(all_true)
    rows.append({"window": "all", **paired_comparison(np.concatenate(all_a), np.concatenate(all_b)),
                 "predict_zero_mae_steps": round(float(np.abs(true).mean()), 2)})
    return {"a": str(model_a), "b": str(model_b), "rows": rows}


def fov_table(models: list[Path], cache: Path, fovs_px: list[int], views: int, seed: int) -> dict:
    """Study 3: each model's error summary at each window size (the same scenes and offsets for every crop size)."""
    rows = []
    for model in models:
        side_px = input_px(model)
        for fov in fovs_px:
            images, true = held_out(cache, side_px, fov, views, seed)
            rows.append({"model": str(model), "window": fov_name(fov), **summary(predict(model, images), true)})
    return {"rows": rows}


def main() -> None:
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("study", choices=["paired", "fov"],
                        help="paired: 2 models, Shapiro-Wilk + Wilcoxon; fov: the table")
    parser.add_argument("models", nargs="+", type=Path)
    parser.add_argument("--cache", type=Path, required=True, help="folder of the held-out renders")
    parser.add_argument("--fov-px", type=int, nargs="+", default=[500, FULL], help="crop sizes; 0 = complete frame")
    parser.add_argument("--views", type=int, default=64)
    parser.add_argument("--seed", type=int, default=2024)
    args = parser.parse_args()
    if args.study == "paired":
        if len(args.models) != 2:
            parser.error("paired needs exactly 2 models (A: with crops, B: without)")
        result = paired_table(args.models[0], args.models[1], args.cache, args.fov_px, args.views, args.seed)
    else:
        result = fov_table(args.models, args.cache, args.fov_px, args.views, args.seed)
    print(json.dumps({"held_out": {"views": args.views, "seed": args.seed, "range_steps": 200.0,
                                   "fov_px": args.fov_px}, **result}, indent=2))


if __name__ == "__main__":
    main()
