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

"""Check that low-resolution renders of a crop window match the native render at every offset in +-200 steps.

    PYTHONPATH=. .venv/bin/python benchmarks/fast_path_fidelity.py [--scenes 3] [--look default]
    (figures: benchmarks/fast_path_fidelity.md)

For each scene a 500 and a 1000 px window around a worm (aligned to ALIGN_PX full-frame px) is rendered
noise-free at the low resolutions that training and `sim` use: 96 px (the model input), 128 px,
side/4, and the window cut out of `sim`'s full-field frame at 1/4 scale (648x486, `sim`'s until 2026-12-03) and
3/4 scale (1944x1458, config/sim.yaml's since), in ``--look``. Each is compared with
the native render (1.55 um grid) binned to the same sampling, as a camera bins: both go through the
model's preprocessing (INTER_AREA to 96 px, per-image z-score) and the RMS of their difference is
reported per offset (max over scenes). The last columns compare with the native full-resolution crop
instead, which adds the preprocessing's second resize (a camera that bins, not the field grid).
``legacy`` is the old rule (field grid = 2x the output's sampling), forced with ``max_native_grid_px=0``
and ``max_band_raster_px=0``. Also the per-frame cost of each renderer (median over the offsets).
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import cv2
import numpy as np

from celegans_autofocus.core import optics
from celegans_autofocus.core.detection import crop_window
from celegans_autofocus.core.images import PreprocessSpec, preprocess
from celegans_autofocus.core.sensor import FULL_FRAME_WH_PX

OFFSETS = list(range(-200, 201, 25))
#: `sim`'s full field: 1/4 scale (until 2026-12-03) and 3/4 scale (config/sim.yaml since); a window aligned to
#: ALIGN_PX full-frame px starts on a whole px of both
SIM_FIELDS_HW = {"1/4": (486, 648), "3/4": (1458, 1944)}
ALIGN_PX = 12


def _rms(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(np.mean((a - b) ** 2)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=3)
    ap.add_argument("--look", default="default", choices=list(optics.LOOKS))
    args = ap.parse_args()
    spec = PreprocessSpec(input_px=96)
    cfg = dataclasses.replace(optics.look_config(args.look), noise=False)
    legacy = dataclasses.replace(cfg, max_native_grid_px=0, max_band_raster_px=0)
    same: dict[tuple, list] = {}
    full: dict[tuple, list] = {}
    cost: dict[tuple, list] = {}
    for seed in range(args.scenes):
        scene = optics.make_scene(np.random.default_rng(7000 + seed), cfg, 2)
        sim_frames = {}
        for name, c, field in (("sim 1/4 field crop", cfg, "1/4"), ("sim 1/4 field crop legacy", legacy, "1/4"),
                               ("sim 3/4 field crop", cfg, "3/4")):
            r = optics.StackRenderer(scene, c, SIM_FIELDS_HW[field], max_offset_steps=300)
            sim_frames[name] = (r, {}, SIM_FIELDS_HW[field][0] / FULL_FRAME_WH_PX[1])
            for o in OFFSETS:
                t = time.perf_counter()
                sim_frames[name][1][o] = r.intensity(o)
                cost.setdefault(name, []).append(time.perf_counter() - t)
        for fov in (500, 1000):
            x0, y0, _, _ = crop_window(scene.worms[0].centroid_px, fov, FULL_FRAME_WH_PX[::-1])
            x0, y0 = ALIGN_PX * (x0 // ALIGN_PX), ALIGN_PX * (y0 // ALIGN_PX)
            win = (x0, y0, fov, fov)
            nat = optics.StackRenderer(scene, cfg, None, window_px=win, max_offset_steps=210)
            native = {o: nat.intensity(o) for o in OFFSETS}
            ref_full = {o: preprocess(img, spec) for o, img in native.items()}

            def binned(o: int, out: int) -> np.ndarray:
                """Return the native render binned to out x out px, as a camera bins."""
                return cv2.resize(native[o], (out, out), interpolation=cv2.INTER_AREA)

            views = [("96 px (model input)", cfg, 96), ("128 px", cfg, 128), ("side/4", cfg, fov // 4),
                     ("128 px legacy", legacy, 128), ("side/4 legacy", legacy, fov // 4)]
            for name, c, out in views + [(n, None, round(fov * sim_frames[n][2])) for n in sim_frames]:
                r = None if c is None else optics.StackRenderer(scene, c, (out, out), window_px=win,
                                                                max_offset_steps=210)
                grid_um = sim_frames[name][0].dx_um if c is None else r.dx_um
                key = (fov, name, f"{grid_um:.2f}")
                for o in OFFSETS:
                    if c is None:
                        scale = sim_frames[name][2]
                        img = sim_frames[name][1][o][round(y0 * scale):round(y0 * scale) + out,
                                                     round(x0 * scale):round(x0 * scale) + out]
                    else:
                        t = time.perf_counter()
                        img = r.intensity(o)
                        cost.setdefault((fov, name), []).append(time.perf_counter() - t)
                    x = preprocess(img, spec)
                    same.setdefault(key, []).append((o, _rms(x, preprocess(binned(o, out), spec))))
                    full.setdefault(key, []).append((o, _rms(x, ref_full[o])))
    print(f"RMS of the z-scored 96 px difference to the native render binned alike, max over {args.scenes} scenes\n")
    print("| window | render | field grid um | " + " | ".join(str(o) for o in OFFSETS)
          + " | worst | worst vs native full-res crop | ms/frame |")
    print("|---" * (len(OFFSETS) + 6) + "|")
    for key, vals in same.items():
        fov, name, dx = key
        by = {o: max(v for oo, v in vals if oo == o) for o in OFFSETS}
        worst_full = max(v for _, v in full[key])
        ms = 1e3 * float(np.median(cost.get((fov, name), cost.get(name))))
        print(f"| {fov} | {name} | {dx} | " + " | ".join(f"{by[o]:.3f}" for o in OFFSETS)
              + f" | **{max(by.values()):.3f}** | {worst_full:.3f} | {ms:.1f} |")


if __name__ == "__main__":
    main()
