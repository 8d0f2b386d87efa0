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

"""Held-out synthetic renders for the studies, calibration and error anatomy, and ONNX models' errors on them.

``views`` random scenes of ``seed`` (neither the training seed 0 nor the validation seed 999), each seen
through one window, imaged at 10 offsets uniform in +-``range_steps``, rendered by the simulator's fast path
at 4/3 of the model's input size like the training pool (128 px for 96; training/synthetic.py,
``SyntheticValidation``) and preprocessed as the model does (its spec). A window is a crop of
``fov_px`` around a worm (centre jittered by 8%), or the complete 2592x1944 frame (``fov_px`` 0). For every
crop size the same scenes, worms and offsets are drawn, so the rows of a field-of-view table are paired.
Renders are kept in ``cache`` (``heldout_<px>_<seed>_<views>_<fov>_r<render version>.npz``, with a hash of the
preprocessing, look and range appended when they are not the defaults) so that the three studies score exactly
the same images; a renderer change (``training.synthetic.RENDER_VERSION``) renders anew.
Models are served through the exported ONNX file by ``FocusPredictor``.

    PYTHONPATH=. python benchmarks/heldout.py paired WITH_CROPS.onnx NO_CROPS.onnx --cache DIR --fov-px 500 0
    PYTHONPATH=. python benchmarks/heldout.py fov MODEL.onnx [...] --cache DIR --fov-px 500 750 1000 1250 0

Each model is scored on renders at its own input size and normalisation (``fov`` may compare models of
different input sizes).
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from celegans_autofocus.core.images import PreprocessSpec
from celegans_autofocus.core.metrics import SIGN_THRESHOLD_STEPS

RENDER_OVERSAMPLE = 4 / 3  # render side / input side, as the training pools (synthetic_oversample)
OFFSETS_PER_VIEW = 10  # renders per held-out scene (one window, 10 offsets)
#: lower edges of the |true offset| bins of summary()'s MAE by distance, in steps
DISTANCE_BINS_STEPS = (0, SIGN_THRESHOLD_STEPS, 50, 100, 150)
FULL = 0  # fov_px of the complete frame


def fov_name(fov_px: int) -> str:
    return "full frame" if fov_px == FULL else f"{fov_px} px crop"


def held_out(spec: PreprocessSpec, fovs_px: Sequence[int], views: int = 64, seed: int = 2024, *,
             range_steps: float = 200.0, look: str = "default",
             cache: Path | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(float32 images (N, px, px) preprocessed by ``spec``, true offsets in steps (N,), window fov px (N,)).

    ``fovs_px``: the crop sizes each scene draws from, or ``[FULL]`` (complete frames). With a ``cache`` folder the
    renders are kept there and read back by every later call asking for the same set.
    """
    fovs_px = [int(f) for f in fovs_px]
    if FULL in fovs_px and len(fovs_px) > 1:
        raise ValueError(f"complete frames ({FULL}) and crops in one held-out set: {fovs_px}")
    from celegans_autofocus.training.synthetic import RENDER_VERSION

    path = None
    if cache is not None:
        path = Path(cache) / f"heldout_{spec.input_px}_{seed}_{views}_{'-'.join(map(str, fovs_px))}_r{RENDER_VERSION}"
        variant = {"preprocess": spec.to_dict(), "look": look, "range_steps": float(range_steps)}
        if variant != {"preprocess": PreprocessSpec(input_px=spec.input_px).to_dict(), "look": "default",
                       "range_steps": 200.0}:  # the default set keeps its short name
            digest = hashlib.sha256(json.dumps(variant, sort_keys=True).encode()).hexdigest()
            path = path.with_name(f"{path.name}_{digest[:12]}")
        path = path.with_suffix(".npz")
        try:
            with np.load(path) as data:
                return data["images"].astype(np.float32), data["offsets_steps"], data["fov_px"]
        except (OSError, KeyError):  # not rendered yet, or by a version that kept no fov_px: render anew
            pass
    from celegans_autofocus.training.config import TrainConfig
    from celegans_autofocus.training.synthetic import SyntheticValidation

    crops = fovs_px != [FULL]
    cfg = TrainConfig(input_px=spec.input_px, normalize=spec.normalize, crops=True,
                      synthetic_crop_fraction=1.0 if crops else 0.0, synthetic_offsets_per_view=OFFSETS_PER_VIEW,
                      synthetic_oversample=RENDER_OVERSAMPLE, synthetic_crop_jitter=0.08,
                      synthetic_val=views * OFFSETS_PER_VIEW, synthetic_val_seed=seed,
                      synthetic_val_fov_px=fovs_px if crops else [500], synthetic_val_range_steps=range_steps,
                      synthetic_look=look)
    if cfg.spec != spec:
        raise ValueError(f"held-out renders for {spec.to_dict()}: training can only make {cfg.spec.to_dict()}")
    val = SyntheticValidation(cfg, spec)
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez(path, images=val.images, offsets_steps=val.offsets_steps, fov_px=val.fov_px)
    return val.images.astype(np.float32), val.offsets_steps, val.fov_px


@lru_cache(maxsize=None)
def _predictor(model: Path):
    """Return the ONNX ``model``'s one predictor (one ORT thread), opened once per run."""
    from celegans_autofocus.core.predictor import FocusPredictor

    return FocusPredictor(model, providers=["CPUExecutionProvider"], intra_op_threads=1)


def model_spec(model: Path) -> PreprocessSpec:
    """Return how the ONNX ``model`` preprocesses a frame (from its metadata)."""
    return _predictor(Path(model)).spec


def predict(model: Path, images: np.ndarray, spec: PreprocessSpec) -> np.ndarray:
    """Offsets in steps predicted by the ONNX ``model`` (one ORT thread) for ``images`` preprocessed by ``spec``."""
    predictor = _predictor(Path(model))
    if predictor.spec != spec:
        raise ValueError(f"{model}: preprocessing {predictor.spec.to_dict()}; the images were preprocessed by "
                         f"{spec.to_dict()}")
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

    spec, spec_b = model_spec(model_a), model_spec(model_b)
    if spec_b != spec:
        raise ValueError(f"paired models need one preprocessing: {model_a} {spec.to_dict()}, "
                         f"{model_b} {spec_b.to_dict()}")
    rows, all_a, all_b, all_true = [], [], [], []
    for fov in fovs_px:
        images, true, _ = held_out(spec, [fov], views, seed, cache=cache)
        err_a, err_b = np.abs(predict(model_a, images, spec) - true), np.abs(predict(model_b, images, spec) - true)
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
        spec = model_spec(model)
        for fov in fovs_px:
            images, true, _ = held_out(spec, [fov], views, seed, cache=cache)
            rows.append({"model": str(model), "window": fov_name(fov), **summary(predict(model, images, spec), true)})
    return {"rows": rows}


def main() -> None:
    import argparse

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
