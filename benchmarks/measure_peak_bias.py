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

"""Where each focus measure peaks, per look and sampling: the hybrid's and the labeller's plane, against the truth.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/measure_peak_bias.py [--seeds 0 1 3]

For each look of ``core.optics.LOOKS`` and scene seed (3 worms, as ``sim``), the first worm is imaged at offsets
-40..40 steps every 2: the 500 full-frame px crop of the player's full field at 1/4, 1/2 and 3/4 scale (what the
live simulator's detector crop gives the measure: config/sim.yaml's frame is 1944 x 1458), and the 500 px crop at
native resolution (what ``bench`` measures).
Prints the offset (steps to focus) at which each measure peaks; 0 is the truth.

    PYTHONPATH=. .venv/bin/python benchmarks/measure_peak_bias.py --real DATASET

The same question on real focus series with a published best plane (a dataset written by
``benchmarks/real_stacks.py``; not worms, no real worm z-stack is public): each image whole, then binned 2x and
4x (INTER_AREA), for each measure its peak minus the published best (in images, and in motor steps of 5 um from
the series' ``step_um``), and the peak's contrast as the hybrid's refine tests it: the peak minus the mean of the
two images nearest +-``probe_steps`` (30 um; at least the next image) away, "-" where the series does not reach
them. Contrasts are in the measure's own units (brenner and vollath_f5: squared intensity).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from celegans_autofocus.core import focus, optics
from celegans_autofocus.core.dataset.io import read_image
from celegans_autofocus.core.dataset.layout import discover
from celegans_autofocus.core.dataset.layout import step_um as layout_step_um
from celegans_autofocus.core.detection import crop_window
from celegans_autofocus.core.hybrid import HybridConfig, peak_contrast
from celegans_autofocus.core.sensor import FULL_FRAME_WH_PX, STEP_UM

MEASURES = ("detail_skewness", "brenner", "vollath_f5")
OFFSETS_STEPS = np.arange(-40, 41, 2)
FULL_HW_PX = FULL_FRAME_WH_PX[::-1]
FIELD_HEIGHTS_PX = (486, 972, 1458)  # the player's full field at 1/4, 1/2 and 3/4 scale
FOV_PX = 500  # the detector's crop (config/sim.yaml's fov_px)


def peaks(look: str, seed: int) -> dict[str, dict[str, int]]:
    """Return {sampling: {measure: the offset of its peak}} for one scene."""
    config = optics.look_config(look)
    scene = optics.make_scene(np.random.default_rng(seed), config, 3)
    cx, cy = scene.worms[0].centroid_px
    views = {}
    for height_px in FIELD_HEIGHTS_PX:
        scale = height_px / FULL_HW_PX[0]
        field = optics.StackRenderer(scene, config, (height_px, round(FULL_HW_PX[1] * scale)), max_offset_steps=60,
                                     seed=seed)
        x0, y0, w, h = crop_window((cx * scale, cy * scale), round(FOV_PX * scale), field.out_shape)
        views[f"{height_px} px field, {w} px crop"] = (
            lambda o, field=field, x0=x0, y0=y0, w=w, h=h: field.frame(o)[y0:y0 + h, x0:x0 + w])
    native = optics.StackRenderer(scene, config, None, crop_window((cx, cy), FOV_PX, FULL_HW_PX), max_offset_steps=60,
                                  seed=seed)
    views[f"native {FOV_PX} px crop"] = native.frame
    out = {}
    for name, view in views.items():
        frames = [view(float(o)) for o in OFFSETS_STEPS]
        out[name] = {m: int(OFFSETS_STEPS[int(np.argmax([focus.get_measure(m)(f) for f in frames]))])
                     for m in MEASURES}
    return out


def _real_cell(values: dict[int, float], best_z: int, step_um: float, probe_z: int) -> str:
    """Return "peak - best in images / motor steps (contrast at +-probe_z)" for one measure's curve."""
    peak = max(values, key=values.get)
    lo, hi = values.get(peak - probe_z), values.get(peak + probe_z)
    contrast = "-" if lo is None or hi is None else f"{peak_contrast(lo, values[peak], hi):.3g}"
    return f"{peak - best_z:+d} / {(peak - best_z) * step_um / STEP_UM:+.1f} ({contrast})"


def real_rows(dataset: Path) -> list[str]:
    """Return one table row per real series and binning, a cell per measure (:func:`_real_cell`)."""
    found = discover(dataset)
    for warning in found.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    for problem in found.failed.values():
        print(f"skipped: {problem}", file=sys.stderr)
    probe_um = HybridConfig().probe_steps * STEP_UM
    rows = []
    for stack in found.stacks:
        if "best_index" not in stack.meta or len(stack.files) < 3:
            print(f"skipped: {stack.plate}/{stack.name} (no best_index, or fewer than 3 images)", file=sys.stderr)
            continue
        step_um = layout_step_um(stack.meta)
        probe_z = max(1, round(probe_um / step_um))
        images = {z: read_image(path) for z, path in stack.files.items()}
        for binning in (1, 2, 4):
            binned = {z: cv2.resize(im, (im.shape[1] // binning, im.shape[0] // binning),
                                    interpolation=cv2.INTER_AREA) for z, im in images.items()}
            h, w = next(iter(binned.values())).shape
            cells = [_real_cell({z: focus.get_measure(m)(im) for z, im in binned.items()}, stack.meta["best_index"],
                                step_um, probe_z) for m in MEASURES]
            rows.append(f"| {stack.plate}/{stack.name} | {len(images)} | {step_um:g} | {probe_z * step_um:g} | "
                        f"{w}x{h} | " + " | ".join(cells) + " |")
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 3])
    ap.add_argument("--real", type=Path, help="a dataset of real focus series (benchmarks/real_stacks.py) instead")
    args = ap.parse_args(argv)
    if args.real is not None:
        print("| series | images | step um | probe um | px (binned) | "
              + " | ".join(f"{m}: peak - best, images / steps (contrast)" for m in MEASURES) + " |")
        print("|---" * (len(MEASURES) + 5) + "|")
        print("\n".join(real_rows(args.real)))
        return 0
    print("| look | seed | sampling | " + " | ".join(MEASURES) + " |")
    print("|---" * (len(MEASURES) + 3) + "|")
    for look in optics.LOOKS:
        for seed in args.seeds:
            for sampling, found in peaks(look, seed).items():
                print(f"| {look} | {seed} | {sampling} | " + " | ".join(f"{found[m]:+d}" for m in MEASURES) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
