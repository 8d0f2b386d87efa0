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

"""Cost of one `sim` camera frame (the 648x486 full field of a 3-worm scene: `sim`'s until 2026-12-03), ms per frame.

This checkout, then another version to compare (run both back to back):

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_frame_cost.py
    PYTHONPATH=/path/to/other/checkout OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_frame_cost.py
"""
from __future__ import annotations

import time

import numpy as np

from celegans_autofocus.core import optics


def main() -> None:
    for band in (False, True):  # stack_player_node's band_limited_frame (default false)
        cfg = optics.OpticsConfig() if band else optics.OpticsConfig(max_band_raster_px=0)
        scene = optics.make_scene(np.random.default_rng(0), cfg, 3)
        renderer = optics.StackRenderer(scene, cfg, (486, 648), seed=0)
        renderer.frame(0.0)
        reps = []
        for _ in range(3):
            offsets = iter(range(-150, 10_000, 30))
            t = time.perf_counter()
            for _ in range(15):
                renderer.frame(next(offsets))
            reps.append((time.perf_counter() - t) / 15 * 1e3)
        print(f"{optics.__file__}: band_limited_frame {band}, field grid {renderer._spectrum.shape}, "
              f"ms per 648x486 frame (3 x 15 frames): " + " ".join(f"{r:.1f}" for r in reps))


if __name__ == "__main__":
    main()
