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

"""Sanity floor on real frames: the focus model should answer near 0 on sharp worms.

    python benchmarks/real_image_check.py FOLDER [--model models/default.onnx] [--fov 250 375 500]
        [--um-per-px 1.55]

FOLDER (searched recursively) holds real frames of worms that are IN FOCUS. Each frame is brought to
the model's pixel size (1.55 um/px), knowing its own from ``--um-per-px``, or ``um_per_px`` of a
``frames.yaml`` beside the frames as written by benchmarks/extract_real_frames.py (null there: the
folder's median estimate from the worm width), or else 1.55 (``core.real_frames``, which ``train
--real-frames`` uses too). The project's detector (core.detection, default settings) looks for worms, and the
model predicts on ``--fov`` px windows around the largest one, as worm_detector_node would crop them.
The right answer on a sharp worm is near 0 steps (|offset| within the depth of field, ~17 steps).
This is a floor, not a metric to train on: the frames have no labels beyond "looks sharp".

``--sim N`` adds the same pipeline on N simulated frames of the simulator's look (``core.optics.SIMULATOR_LOOK``)
and of looks randomised from it (core.randomize), at known offsets: in focus (|offset| <= 5) and across +-200
steps (MAE, sign accuracy beyond 20 steps).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

from celegans_autofocus.core import optics, randomize
from celegans_autofocus.core.detection import DetectorConfig, WormDetector, crop_window
from celegans_autofocus.core.predictor import FocusPredictor, default_model_path
from celegans_autofocus.core.real_frames import image_folders, read_frames, reference_u8, worm_crop
from celegans_autofocus.core.sensor import UM_PER_PX

NEAR_STEPS = 20.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled one)")
    ap.add_argument("--fov", type=int, nargs="+", default=[250, 375, 500], help="crop sides in px at 1.55 um/px")
    ap.add_argument("--um-per-px", type=float, default=None, help="pixel size of every frame (overrides frames.yaml)")
    ap.add_argument("--sim", type=int, default=0, metavar="N", help="also check N simulated frames per row")
    args = ap.parse_args(argv)
    folders = image_folders(args.folder)
    if not folders:
        print(f"no images under {args.folder}", file=sys.stderr)
        return 2
    model = FocusPredictor(args.model or default_model_path(), providers="CPUExecutionProvider")
    detector = WormDetector(DetectorConfig())
    groups: dict[str, dict] = {}
    for folder in folders:
        g = groups.setdefault(str(folder.relative_to(args.folder)) or ".",
                              {"frames": 0, "hits": 0, "pred": {f: [] for f in args.fov},
                               "sigma": {f: [] for f in args.fov}})
        for img in read_frames(folder, args.um_per_px):
            g["frames"] += 1
            found = detector.detect(img)
            if not found:
                continue
            g["hits"] += 1
            for fov in args.fov:
                offset, sigma = model.predict_with_sigma(worm_crop(img, found[0].centroid_px, fov))
                g["pred"][fov].append(offset)
                g["sigma"][fov].append(sigma)
    n_frames = sum(g["frames"] for g in groups.values())
    print(f"model {model.name}; {n_frames} frames; right answer near 0 (|offset| <= {NEAR_STEPS:g} steps)\n")
    extra = " median sigma (steps) |" if model.has_sigma else ""  # models with an uncertainty output
    print("| folder | frames | detector hits | fov px | median offset (steps) | p10..p90 | share within +-20 |" + extra)
    print("|---|---|---|---|---|---|---|" + ("---|" if extra else ""))
    for name, g in groups.items():
        for fov in args.fov:
            p = np.array(g["pred"][fov])
            if not len(p):
                print(f"| {name} | {g['frames']} | {g['hits']} | {fov} | - | - | - |" + (" - |" if extra else ""))
                continue
            print(f"| {name} | {g['frames']} | {g['hits']} | {fov} | {np.median(p):+.1f} | "
                  f"{np.percentile(p, 10):+.1f}..{np.percentile(p, 90):+.1f} | "
                  f"{np.mean(np.abs(p) <= NEAR_STEPS):.2f} |"
                  + (f" {np.median(g['sigma'][fov]):.1f} |" if extra else ""))
    if args.sim:
        _sim_check(model, detector, args.sim, args.fov)
    return 0


def _sim_check(model: FocusPredictor, detector: WormDetector, n: int, fovs: list[int]) -> None:
    print(f"\nSimulated frames, same pipeline (seed 0; {n} per row)\n")
    print("| simulator | offsets | detector hits | fov px | median prediction (in focus) / MAE | "
          "sign acc. beyond 20 |")
    print("|---|---|---|---|---|---|")
    look = optics.look_config(optics.SIMULATOR_LOOK)
    for name, randomised in ((optics.SIMULATOR_LOOK, False), ("randomised", True)):
        for span in (5.0, 200.0):
            rng = np.random.default_rng(0)
            hits, pred, true = 0, {f: [] for f in fovs}, []
            for _ in range(n):
                config = randomize.random_config(rng, look) if randomised else look
                scene = optics.make_scene(rng, config, 1)
                side = int(np.ceil(max(fovs) * UM_PER_PX / config.um_per_px * 1.2))
                frame_hw = (config.frame_height_px, config.frame_width_px)
                window = crop_window(scene.worms[0].centroid_px, side, frame_hw)
                offset = float(rng.uniform(-span, span))
                renderer = optics.StackRenderer(scene, config, None, window, max_offset_steps=span + 1,
                                                seed=int(rng.integers(2**31)))
                img = reference_u8(renderer.frame(offset), config.um_per_px)
                found = detector.detect(img)
                if not found:
                    continue
                hits += 1
                true.append(offset)
                for fov in fovs:
                    pred[fov].append(model.predict(worm_crop(img, found[0].centroid_px, fov)))
            t = np.array(true)
            for fov in fovs:
                p = np.array(pred[fov])
                if not len(p):
                    continue
                far = np.abs(t) > NEAR_STEPS
                sign = f"{np.mean(np.sign(p[far]) == np.sign(t[far])):.2f}" if far.any() else "-"
                stat = f"{np.median(p):+.1f}" if span <= 5 else f"MAE {np.mean(np.abs(p - t)):.1f}"
                print(f"| {name} | +-{span:g} | {hits}/{n} | {fov} | {stat} | {sign} |")


if __name__ == "__main__":
    sys.exit(main())
