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

    PYTHONPATH=. .venv/bin/python benchmarks/fast_path_fidelity.py [--scenes 4]
    (figures: benchmarks/fast_path_fidelity.md)

For each scene a 500 and a 1000 px window around a worm is rendered noise-free on the native 1.55 um
grid (out_shape = window) and at the low resolutions that training and `sim` use (128 px; side/4);
both go through the model's preprocessing (INTER_AREA to 96 px, per-image z-score) and the RMS of
their difference is reported per offset (max over scenes). ``legacy`` is the old rule (field grid =
2x the output's sampling, capped by ``max_oversample``), forced with ``max_native_grid_px=0``.
Also the per-frame cost of each renderer (median over the offsets, this machine).
"""
from __future__ import annotations

import argparse
import dataclasses
import time

import numpy as np

from celegans_autofocus.core import optics
from celegans_autofocus.core.detection import crop_window
from celegans_autofocus.core.images import PreprocessSpec, preprocess
from celegans_autofocus.core.sensor import FULL_FRAME_WH_PX

OFFSETS = list(range(-200, 201, 25))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=4)
    args = ap.parse_args()
    spec = PreprocessSpec(input_px=96)
    cfg = optics.OpticsConfig(noise=False)
    legacy = dataclasses.replace(cfg, max_native_grid_px=0)
    rms: dict[tuple, list] = {}
    cost: dict[tuple, list] = {}
    for seed in range(args.scenes):
        scene = optics.make_scene(np.random.default_rng(7000 + seed), cfg, 2)
        for fov in (500, 1000):
            win = crop_window(scene.worms[0].centroid_px, fov, FULL_FRAME_WH_PX[::-1])
            nat = optics.StackRenderer(scene, cfg, None, window_px=win, max_offset_steps=210)
            ref = {o: preprocess(nat.intensity(o), spec) for o in OFFSETS}
            for name, c, out in (("96 px (model input)", cfg, 96), ("128 px", cfg, 128), ("side/4", cfg, fov // 4),
                                 ("128 px legacy", legacy, 128), ("side/4 legacy", legacy, fov // 4)):
                r = optics.StackRenderer(scene, c, (out, out), window_px=win, max_offset_steps=210)
                key = (fov, name, f"{r.dx_um:.2f}")
                for o in OFFSETS:
                    t = time.perf_counter()
                    img = r.intensity(o)
                    cost.setdefault(key, []).append(time.perf_counter() - t)
                    d = preprocess(img, spec) - ref[o]
                    rms.setdefault(key, []).append((o, float(np.sqrt(np.mean(d * d)))))
    print(f"RMS of the z-scored 96 px difference to the native render, max over {args.scenes} scenes\n")
    print("| window | render | field grid um | " + " | ".join(str(o) for o in OFFSETS) + " | worst | ms/frame |")
    print("|---" * (len(OFFSETS) + 5) + "|")
    for (fov, name, dx), vals in rms.items():
        by = {o: max(v for oo, v in vals if oo == o) for o in OFFSETS}
        ms = 1e3 * float(np.median(cost[(fov, name, dx)]))
        print(f"| {fov} | {name} | {dx} | " + " | ".join(f"{by[o]:.3f}" for o in OFFSETS)
              + f" | **{max(by.values()):.3f}** | {ms:.1f} |")


if __name__ == "__main__":
    main()
