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

"""Three small timings quoted in the README, model card and e2e_latency.md, in one script.

    .venv/bin/python benchmarks/sim_render_and_threads.py            # ~1 min on 2 cores

1. The simulator's 648x486 frame (what `sim` rendered until 2026-12-03) with the field oversampling capped at 2 (now)
   and uncapped (3x, what resolves the objective's light): ms per frame.
2. INTER_AREA from a 2592x1944 frame to 640 px (fractional factor 4.05) and to 648 px (whole factor 4):
   the detector's debug view.
3. `celegans-autofocus sim --duration 10` with `--threads 1` and `--threads 0`: the fps it reaches in
   one process (run as subprocesses, DDS on loopback).
"""
from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from celegans_autofocus.core import optics
from celegans_autofocus.core.sensor import FULL_FRAME_WH_PX


def ms_per_call(fn, n: int) -> float:
    fn()
    started = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - started) / n * 1e3


def main() -> None:
    cfg = optics.OpticsConfig()
    scene = optics.make_scene(np.random.default_rng(0), cfg, 3)
    for cap in (2, 8):
        renderer = optics.StackRenderer(scene, dataclasses.replace(cfg, max_oversample=cap), (486, 648), seed=0)
        offsets = iter(range(-150, 10_000, 30))
        t = ms_per_call(lambda: renderer.frame(next(offsets)), 10)
        print(f"sim frame 648x486, max_oversample {cap} (oversample {renderer.oversample}): {t:.1f} ms")
    frame = renderer.frame(0.0)
    full = cv2.resize(frame, FULL_FRAME_WH_PX, interpolation=cv2.INTER_CUBIC)
    for width in (640, 648):
        t = ms_per_call(lambda: cv2.resize(full, (width, width * 3 // 4), interpolation=cv2.INTER_AREA), 20)
        print(f"INTER_AREA 2592x1944 -> {width} px wide: {t:.1f} ms")
    cli = Path(sys.executable).with_name("celegans-autofocus")
    env = {**os.environ, "ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}
    for threads in (1, 0):
        out = subprocess.run([str(cli), "sim", "--duration", "10", "--seed", "0", "--threads", str(threads),
                              "--frame-height", "486"],
                             env=env, capture_output=True, text=True, check=True).stdout
        print(f"sim --threads {threads}: " + re.search(r"frames +(.*)", out).group(1))


if __name__ == "__main__":
    main()
