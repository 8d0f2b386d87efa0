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

"""The background around a worm as the model sees it: real in-focus frames against the simulator by defocus.

    PYTHONPATH=. python benchmarks/background_texture.py texture REAL_FOLDER [--looks default real_adult ...]
    PYTHONPATH=. python benchmarks/background_texture.py probe MODEL.onnx [--look real_adult]
    (figures: benchmarks/background_texture.md)

``texture``: the mottle of the background at the model's scale. A ``--fov`` px window around the detector's worm
(real frames: core.real_frames, as in benchmarks/real_image_check.py), preprocessed to the model's 96 px input; the
band-pass (Gaussian 0.7 px minus Gaussian 4 px) of the background (the brighter 60% of pixels, eroded by a
9 x 9 px square away from the worm) divided by the whole input's std. Real frames per folder of images under
REAL_FOLDER (searched recursively); simulated crops of ``--scenes`` scenes per look at a row of defocus offsets
(median over scenes).

``probe``: in-focus simulated crops of a look with a smooth multiplicative mottle added (white noise blurred by a
Gaussian of 12 px, unit std, times the amplitude): the model's median answer per amplitude. A model that reads
the background's mottle as defocus moves away from 0 as the amplitude grows, though the worm is in focus.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from celegans_autofocus.core import optics
from celegans_autofocus.core.detection import DetectorConfig, WormDetector, crop_window
from celegans_autofocus.core.images import PreprocessSpec, preprocess
from celegans_autofocus.core.predictor import FocusPredictor
from celegans_autofocus.core.real_frames import image_folders, read_frames, to_u8, worm_crop

OFFSETS_STEPS = (-150, -100, -60, -30, -15, 0, 15, 30, 60, 100, 150)
PROBE_AMPLITUDES = (0.0, 0.01, 0.02, 0.04)
SPEC = PreprocessSpec(input_px=96)


def mottle(crop: np.ndarray) -> float:
    """Band-passed background std / input std of a crop at the model's input size."""
    x = np.asarray(preprocess(crop, SPEC), np.float64).reshape(SPEC.input_px, SPEC.input_px)
    smooth = cv2.GaussianBlur(x, (0, 0), 3)
    background = cv2.erode((smooth > np.percentile(smooth, 40)).astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    band = cv2.GaussianBlur(x, (0, 0), 0.7) - cv2.GaussianBlur(x, (0, 0), 4)
    return float(band[background].std() / (x.std() + 1e-9))


def _sim_renderer(look: str, seed: int, fov_px: int) -> optics.StackRenderer:
    config = optics.look_config(look)
    rng = np.random.default_rng(seed)
    scene = optics.make_scene(rng, config, 1)
    window = crop_window(scene.worms[0].centroid_px, fov_px, (config.frame_height_px, config.frame_width_px))
    return optics.StackRenderer(scene, config, None, window, max_offset_steps=max(map(abs, OFFSETS_STEPS)) + 1,
                                seed=seed + 1)


def texture(args: argparse.Namespace) -> None:
    detector = WormDetector(DetectorConfig())
    print(f"| set | detector hits | mottle at {args.fov} px (median) |\n|---|---|---|")
    for folder in image_folders(args.folder):
        values = []
        for img in read_frames(folder):
            found = detector.detect(img)
            if found:
                values.append(mottle(worm_crop(img, found[0].centroid_px, args.fov)))
        if values:
            print(f"| real: {folder.name} | {len(values)} | {np.median(values):.3f} |")
    print("\n| look | " + " | ".join(f"{o:+d}" for o in OFFSETS_STEPS) + " |\n|---|" + "---|" * len(OFFSETS_STEPS))
    for look in args.looks:
        rows = [[mottle(to_u8(r.frame(o))) for o in OFFSETS_STEPS]
                for r in (_sim_renderer(look, s, args.fov) for s in range(args.scenes))]
        print(f"| {look} | " + " | ".join(f"{v:.3f}" for v in np.median(rows, axis=0)) + " |")


def probe(args: argparse.Namespace) -> None:
    model = FocusPredictor(args.model)
    answers: dict[float, list[float]] = {a: [] for a in PROBE_AMPLITUDES}
    for seed in range(args.scenes):
        frame = _sim_renderer(args.look, seed, args.fov).frame(0.0).astype(np.float64)
        field = cv2.GaussianBlur(np.random.default_rng(1000 + seed).standard_normal(frame.shape), (0, 0), 12)
        field /= field.std()
        for amplitude in PROBE_AMPLITUDES:
            answers[amplitude].append(model.predict(to_u8(frame * (1 + amplitude * field))))
    print(f"model {args.model.name}; look {args.look}; {args.scenes} in-focus scenes, {args.fov} px crops\n")
    print("| mottle amplitude | median answer (steps) | p10..p90 |\n|---|---|---|")
    for amplitude, values in answers.items():
        p10, p50, p90 = np.percentile(values, [10, 50, 90])
        print(f"| {amplitude:.2f} | {p50:+.1f} | {p10:+.1f}..{p90:+.1f} |")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    t = sub.add_parser("texture")
    t.add_argument("folder", type=Path, help="folders of real frames (benchmarks/extract_real_frames.py)")
    t.add_argument("--looks", nargs="+", default=["default", "real_adult", "real_adult_mottled"],
                   choices=list(optics.LOOKS))
    p = sub.add_parser("probe")
    p.add_argument("model", type=Path)
    p.add_argument("--look", default="real_adult", choices=list(optics.LOOKS))
    for s in (t, p):
        s.add_argument("--fov", type=int, default=500, help="crop side in px at 1.55 um/px")
        s.add_argument("--scenes", type=int, default=12, help="simulated scenes")
    args = ap.parse_args(argv)
    (texture if args.what == "texture" else probe)(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
