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

"""Simulator speed (fast path, crops, full frame) and fast-path fidelity against exact physics.

    .venv/bin/python benchmarks/optics_speed.py

Fidelity: the noise-free fast-path intensity at 512x384 against the native 2592x1944 render
binned to 512x384 with INTER_AREA (what a 500 px model input sees of a real frame); the
field grid of the fast path is ``max_oversample`` times finer than its output.
"""
from __future__ import annotations

import os
import sys
import time
from dataclasses import replace

import cv2
import numpy as np

from celegans_autofocus.core.optics import OpticsConfig, StackRenderer, make_scene, render


def _times_ms(fn, offsets) -> np.ndarray:
    out = []
    for off in offsets:
        t = time.perf_counter()
        fn(off)
        out.append((time.perf_counter() - t) * 1e3)
    return np.array(out)


def main() -> int:
    config = OpticsConfig()
    print(f"load average at start: {os.getloadavg()[0]:.1f} (2 shared cores)\n")
    rng = np.random.default_rng(0)
    t = time.perf_counter()
    scenes = [make_scene(rng, config, 3) for _ in range(5)]
    print(f"make_scene (3 worms): {(time.perf_counter() - t) / 5 * 1e3:.0f} ms per scene")
    offsets = np.linspace(-250, 250, 60)
    print("\n| path | init ms | frame ms median | frame ms p95 |\n|---|---|---|---|")
    for label, out_shape, window in [("fast 512x384 full field (max_oversample 2)", (384, 512), None),
                                     ("crop 500x500 native", None, (1046, 722, 500, 500))]:
        inits, frames = [], []
        for scene in scenes:
            t = time.perf_counter()
            renderer = StackRenderer(scene, config, out_shape, window, seed=0)
            inits.append((time.perf_counter() - t) * 1e3)
            frames.append(_times_ms(renderer.frame, offsets[::5] if scene is not scenes[0] else offsets))
        f = np.concatenate(frames)
        print(f"| {label} | {np.median(inits):.0f} | {np.median(f):.1f} | {np.percentile(f, 95):.1f} |")
    t = time.perf_counter()
    render(scenes[0], 120, config, np.random.default_rng(1))
    one_ms = (time.perf_counter() - t) * 1e3
    renderer = StackRenderer(scenes[0], config, None, None, seed=0, max_offset_steps=250)
    f = _times_ms(renderer.frame, [-200, -50, 0, 60, 200])
    print(f"| full frame 2592x1944, StackRenderer (+-250 steps) | - | {np.median(f):.0f} | {f.max():.0f} (max of 5) |")
    print(f"\nrender() of one full frame, scene rasterized from scratch: {one_ms:.0f} ms")

    quiet = replace(config, noise=False)
    exact = StackRenderer(scenes[1], quiet, None, None, max_offset_steps=100)
    print("\nfast-path fidelity, correlation with the binned native render:\n")
    print("| max_oversample | offset -80 | -16 | 0 | 16 | 80 |\n|---|---|---|---|---|---|")
    for k in (1, 2, 4):
        fast = StackRenderer(scenes[1], replace(quiet, max_oversample=k), (384, 512), max_offset_steps=100)
        cells = []
        for off in (-80, -16, 0, 16, 80):
            ref = cv2.resize(exact.intensity(off), (512, 384), interpolation=cv2.INTER_AREA)
            cells.append(f"{np.corrcoef(ref.ravel(), fast.intensity(off).ravel())[0, 1]:.3f}")
        print(f"| {k} | " + " | ".join(cells) + " |")
    print(f"\nload average at end: {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
