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

"""What the model's answer on sharp real worms depends on: the same frames, perturbed one way at a time.

    python benchmarks/real_frame_perturbations.py FOLDER [--model models/default.onnx] [--fov 500] [--max-frames 12]
        [--sim N]

The pipeline of core.real_frames (the frame at the model's pixel size, the detector's largest
worm, a ``--fov`` px window around it), with each frame also rescaled, blurred (a Gaussian of sigma px, the
way defocus starts), given another gamma or contrast, inverted, or given camera noise, before the crop. A
model that reads focus from sharpness answers further from 0 on blurred frames; one whose bias on real
frames comes from appearance (how dark a worm is) moves with gamma instead. Prints the median prediction
and sigma per source and perturbation. ``--sim N`` adds N in-focus frames of the default simulator (seed 0)
as a control: the same perturbations on frames whose right answer is known to be 0.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from celegans_autofocus.core import optics
from celegans_autofocus.core.detection import DetectorConfig, WormDetector, crop_window
from celegans_autofocus.core.predictor import FocusPredictor, default_model_path
from celegans_autofocus.core.real_frames import image_folders, read_frames, reference_u8, worm_crop


def perturbations(img: np.ndarray):
    """(name, scale factor of the frame, perturbed uint8 frame) for each perturbation."""
    yield "as is", 1.0, img
    for s in (0.7, 1.4):
        yield f"scale x{s:g}", s, cv2.resize(img, None, fx=s, fy=s,
                                             interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    for b in (0.7, 1.5, 3.0, 6.0):
        yield f"blur {b:g} px", 1.0, cv2.GaussianBlur(img, (0, 0), b)
    f = img.astype(np.float32) / 255.0
    for g in (0.6, 1.6):
        yield f"gamma {g:g}", 1.0, np.clip(255.0 * f ** g, 0, 255).astype(np.uint8)
    mean = float(f.mean())
    for c in (0.5, 2.0):
        yield f"contrast x{c:g}", 1.0, np.clip(255.0 * (mean + c * (f - mean)), 0, 255).astype(np.uint8)
    yield "inverted", 1.0, 255 - img
    noisy = img + np.random.default_rng(0).normal(0.0, 8.0, img.shape)
    yield "noise 8 DN", 1.0, np.clip(noisy, 0, 255).astype(np.uint8)


def sim_frames(n: int, fov_px: int):
    """(name, reference-scale uint8 frame) for ``n`` in-focus frames of the default simulator, seed 0."""
    rng = np.random.default_rng(0)
    config = optics.OpticsConfig()
    for _ in range(n):
        scene = optics.make_scene(rng, config, 1)
        side = int(np.ceil(fov_px * 1.55 / config.um_per_px * 1.6))
        window = crop_window(scene.worms[0].centroid_px, side, (config.frame_height_px, config.frame_width_px))
        renderer = optics.StackRenderer(scene, config, None, window, max_offset_steps=1.0,
                                        seed=int(rng.integers(2**31)))
        yield "simulator (default, in focus)", reference_u8(renderer.frame(0.0), config.um_per_px)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--model", type=Path, default=None, help="ONNX model (default: the bundled one)")
    ap.add_argument("--fov", type=int, default=500, help="crop side in px at 1.55 um/px")
    ap.add_argument("--max-frames", type=int, default=12, help="frames per source folder")
    ap.add_argument("--sim", type=int, default=0, metavar="N", help="also N in-focus frames of the simulator")
    args = ap.parse_args(argv)
    model = FocusPredictor(args.model or default_model_path(), providers="CPUExecutionProvider")
    detector = WormDetector(DetectorConfig())
    rows: dict[tuple[str, str], list[tuple[float, float]]] = {}
    frames = [(folder.name, img) for folder in image_folders(args.folder)
              for img in read_frames(folder, max_frames=args.max_frames)]
    frames += list(sim_frames(args.sim, args.fov))
    for source, img in frames:
        found = detector.detect(img)
        if not found:
            continue
        cx, cy = found[0].centroid_px
        for name, scale, frame in perturbations(img):
            crop = worm_crop(frame, (cx * scale, cy * scale), args.fov)
            rows.setdefault((source, name), []).append(model.predict_with_sigma(crop))
    print(f"model {model.name}; {args.fov} px crops around the detector's worm; right answer near 0\n")
    print("| source | perturbation | frames | median prediction (steps) | median sigma (steps) |")
    print("|---|---|---|---|---|")
    for (source, name), values in rows.items():
        a = np.array(values, dtype=float)
        sigma = f"{np.nanmedian(a[:, 1]):.1f}" if np.isfinite(a[:, 1]).any() else "-"
        print(f"| {source} | {name} | {len(a)} | {np.median(a[:, 0]):+.1f} | {sigma} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
