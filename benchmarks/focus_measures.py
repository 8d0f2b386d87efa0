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

"""How often each focus measure's argmax lands within +-8 steps of the simulator's true best plane.

Stacks are drawn exactly as ``celegans-autofocus synth`` draws them (core.optics.draw_stack:
1-3 worms, true best index uniform within +-range/4, z indices -range..range every k steps),
rendered with noise and 8-bit output, and scored in three views of the same scene:
  crop500  500x500 px window at native 1.55 um/px centred on the first worm (the paper's crops)
  full648  the whole 2592x1944 field binned 4x to 648x486 (about what a 500 px model input sees)
  full     the whole field at native 2592x1944 (expensive: fewer stacks, coarser z sampling)

    .venv/bin/python benchmarks/focus_measures.py --stacks 40 --full-stacks 6
"""
from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from celegans_autofocus.core import focus
from celegans_autofocus.core.optics import OpticsConfig, StackRenderer, draw_stack

TOLERANCE_STEPS = 8


def _views(scene, config: OpticsConfig) -> dict[str, tuple]:
    cx, cy = scene.worms[0].centroid_px
    x0 = int(np.clip(round(cx) - 250, 0, config.frame_width_px - 500))
    y0 = int(np.clip(round(cy) - 250, 0, config.frame_height_px - 500))
    return {"crop500": ((x0, y0, 500, 500), None), "full648": (None, (486, 648)), "full": (None, None)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--stacks", type=int, default=40, help="stacks for the crop500 and full648 views")
    ap.add_argument("--full-stacks", type=int, default=6, help="stacks for the native full-frame view")
    ap.add_argument("--range-steps", type=int, default=200)
    ap.add_argument("--step-every", type=int, default=4, help="z sampling for crop500 and full648")
    ap.add_argument("--full-step-every", type=int, default=8, help="z sampling for the native full view")
    ap.add_argument("--seed", type=int, default=1000, help="benchmark seed (measure design used other seeds)")
    ap.add_argument("--json", help="write per-stack results here")
    args = ap.parse_args()

    config = OpticsConfig()
    names = list(focus.MEASURES)
    rows = []  # (view, stack, best, {measure: argmax z})
    seqs = np.random.SeedSequence(args.seed).spawn(max(args.stacks, args.full_stacks))
    t0 = time.perf_counter()
    for k, seq in enumerate(seqs):
        rng = np.random.default_rng(seq)
        scene, best = draw_stack(rng, config, args.range_steps)
        for view, (window, out_shape) in _views(scene, config).items():
            n, every = (args.full_stacks, args.full_step_every) if view == "full" else (args.stacks, args.step_every)
            if k >= n:
                continue
            zs = np.arange(-args.range_steps, args.range_steps + 1, every)
            offsets = best - zs
            renderer = StackRenderer(scene, config, out_shape, window, rng=rng,
                                     max_offset_steps=float(np.abs(offsets).max()))
            values = np.empty((len(zs), len(names)))
            for i, off in enumerate(offsets):
                image = renderer.frame(off)
                values[i] = [focus.MEASURES[m](image) for m in names]
            argmax_z = {m: int(zs[values[:, j].argmax()]) for j, m in enumerate(names)}
            rows.append((view, k, best, argmax_z))
            print(f"[{time.perf_counter() - t0:6.0f} s] stack {k} {view}: best {best:+d} "
                  + " ".join(f"{m}={argmax_z[m] - best:+d}" for m in names), file=sys.stderr, flush=True)

    views = [v for v in ("crop500", "full648", "full") if any(r[0] == v for r in rows)]
    print(f"\nwithin +-{TOLERANCE_STEPS} steps of the true best plane: hits/stacks (%), median |error| steps\n")
    print("| measure | " + " | ".join(views) + " | all |")
    print("|---|" + "---|" * (len(views) + 1))
    for m in names:
        cells = []
        for v in views + ["all"]:
            errs = np.array([abs(r[3][m] - r[2]) for r in rows if v in ("all", r[0])])
            hits = int((errs <= TOLERANCE_STEPS).sum())
            cells.append(f"{hits}/{len(errs)} ({100 * hits / len(errs):.0f}%), {np.median(errs):.0f}")
        print(f"| {m} | " + " | ".join(cells) + " |")
    print(f"\ntotal time {time.perf_counter() - t0:.0f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{"view": v, "stack": k, "best_index": b, "argmax_index": a} for v, k, b, a in rows], f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
