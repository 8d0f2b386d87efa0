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

"""Worm appearance statistics, real frames next to the simulator, under the same detector and crop.

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/sim_vs_real.py /work/realworms/frames --sim-n 400

REAL_ROOT holds one folder per source as written by benchmarks/extract_real_frames.py (PNGs +
frames.yaml with the pixel size where known; unknown ones are estimated per source from the worm
width, core.appearance.ADULT_MEAN_WIDTH_UM). Every frame (real or simulated) is resampled to the
simulator's 1.55 um/px, the largest worm found by core.detection (the relaxed detector when the
default finds none) and a 500 px window cut around it; core.appearance measures it. The simulator
is rendered within 5 steps of focus (depth of field ~17 steps), by default (``OpticsConfig()``: what
the bundled model was trained on), in the look fitted to real adults (``core.optics.LOOKS["real_adult"]``,
benchmarks/calibrate_optics.md) and randomised (``core.randomize.random_config``).
Texture, noise and spectrum slope are not reported for frames upscaled more than 2x (they would
measure the interpolation). Sources coarser than MAX_CHECKED_UM_PER_PX (worms ~5 px wide) are listed
but not held to the randomised range, which spans 1-3 um/px.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

from celegans_autofocus.core import appearance, optics, randomize
from celegans_autofocus.core.detection import crop_window
from celegans_autofocus.core.real_frames import folder_um_per_px
from celegans_autofocus.core.sensor import UM_PER_PX

STATS = ["contrast", "core", "rim", "ring_mean", "ring_p95", "texture", "slope", "noise", "width_px"]
SCALE_SENSITIVE = {"texture", "slope", "noise"}
MAX_CHECKED_UM_PER_PX = 5.0
#: Real frames whose detection is not a worm (crops looked at by eye): listed, not measured.
NOT_A_WORM = {"worme_Image_836.png": "an air bubble's outline", "worme_Image_845.png": "the meniscus edge"}


def real_stats(folder: Path, fov_px: int) -> tuple[dict, list[dict]]:
    meta = yaml.safe_load((folder / "frames.yaml").read_text())
    grays = [cv2.imread(str(folder / f["file"]), cv2.IMREAD_GRAYSCALE) for f in meta["frames"]]
    um = folder_um_per_px(folder)
    rows = []
    for f, g in zip(meta["frames"], grays):
        if f["file"] in NOT_A_WORM:
            rows.append({"file": f["file"], "detected": None})
            continue
        found = appearance.find_and_crop(appearance.to_reference_scale(g, um), fov_px)
        if found is None:
            rows.append({"file": f["file"], "detected": None})
            continue
        crop, det, default = found
        try:
            s = appearance.crop_stats(crop, det.centroid_px).as_dict()
        except ValueError:
            rows.append({"file": f["file"], "detected": None})
            continue
        if um / UM_PER_PX > 2:
            for k in SCALE_SENSITIVE:
                s[k] = float("nan")
        rows.append({"file": f["file"], "detected": "default" if default else "relaxed", **s})
    return {"source": meta["source"], "um_per_px": um, "known": meta.get("um_per_px") is not None}, rows


def sim_stats(n: int, seed: int, draw_config, fov_px: int) -> list[dict]:
    """Statistics of ``n`` in-focus crops, each scene's optics from ``draw_config(rng)``."""
    rows = []
    rng = np.random.default_rng(seed)
    for _ in range(n):
        config = draw_config(rng)
        scene = optics.make_scene(rng, config, int(rng.integers(1, 3)))
        side = int(math.ceil(fov_px * UM_PER_PX / config.um_per_px * 1.3))
        window = crop_window(scene.worms[0].centroid_px, side, (config.frame_height_px, config.frame_width_px))
        offset = float(rng.uniform(-5, 5))
        renderer = optics.StackRenderer(scene, config, None, window, max_offset_steps=6,
                                        seed=int(rng.integers(2**31)))
        img = appearance.to_reference_scale(renderer.frame(offset), config.um_per_px)
        found = appearance.find_and_crop(img, fov_px)
        if found is None:
            rows.append({"detected": None})
            continue
        crop, det, default = found
        try:
            rows.append({"detected": "default" if default else "relaxed",
                         **appearance.crop_stats(crop, det.centroid_px).as_dict()})
        except ValueError:
            rows.append({"detected": None})
    return rows


def _values(rows: list[dict], key: str) -> np.ndarray:
    v = np.array([r[key] for r in rows if r.get("detected")], float)
    return v[np.isfinite(v)]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("real_root", type=Path)
    ap.add_argument("--sim-n", type=int, default=60, help="simulated crops per set")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--fov", type=int, default=500, help="crop side in px at 1.55 um/px")
    args = ap.parse_args(argv)

    sources = []
    for folder in sorted(p for p in args.real_root.iterdir() if (p / "frames.yaml").exists()):
        sources.append(real_stats(folder, args.fov))
        info, rows = sources[-1]
        print(f"{info['source']}: {len(rows)} frames, {info['um_per_px']:.2f} um/px "
              f"({'known' if info['known'] else 'estimated'})", file=sys.stderr)
    sims = {"sim default": sim_stats(args.sim_n, args.seed, lambda rng: optics.OpticsConfig(), args.fov),
            "sim real_adult": sim_stats(args.sim_n, args.seed, lambda rng: optics.look_config("real_adult"),
                                        args.fov),
            "sim randomised": sim_stats(args.sim_n, args.seed + 1, randomize.random_config, args.fov)}

    print("Median (min..max) per set; relative to the local background level, width in px at 1.55 um/px.\n")
    print("| set | frames (detected: default / relaxed) | " + " | ".join(STATS) + " |")
    print("|---" * (len(STATS) + 2) + "|")

    def line(name: str, rows: list[dict]) -> None:
        d = sum(r.get("detected") == "default" for r in rows)
        rl = sum(r.get("detected") == "relaxed" for r in rows)
        cells = []
        for k in STATS:
            v = _values(rows, k)
            cells.append("n/a" if not len(v) else f"{np.median(v):.3f} ({v.min():.3f}..{v.max():.3f})")
        print(f"| {name} | {len(rows)} ({d} / {rl}) | " + " | ".join(cells) + " |")

    for info, rows in sources:
        line(f"{info['source']} ({info['um_per_px']:.2f} um/px{'' if info['known'] else ', est.'})", rows)
    for name, rows in sims.items():
        line(name, rows)

    rnd = sims["sim randomised"]
    print("\nIs every real frame's statistic inside the randomised simulator's range (min..max)? "
          "Frames inside / frames measured.\n")
    print("| source | " + " | ".join(STATS) + " |")
    print("|---" * (len(STATS) + 1) + "|")
    outside = checked = 0
    for info, rows in sources:
        if info["um_per_px"] > MAX_CHECKED_UM_PER_PX:
            print(f"| {info['source']} | " + " | ".join("not checked" for _ in STATS) + " |")
            continue
        cells = []
        for k in STATS:
            v, s = _values(rows, k), _values(rnd, k)
            if not len(v):
                cells.append("n/a")
                continue
            inside = int(np.sum((s.min() <= v) & (v <= s.max())))
            outside += len(v) - inside
            checked += len(v)
            cells.append(f"{inside}/{len(v)}" if inside == len(v) else f"**{inside}/{len(v)}**")
        print(f"| {info['source']} | " + " | ".join(cells) + " |")
    print(f"\n{outside} of {checked} real frame statistics outside the randomised range")
    print("\nNot measured (the detection is not a worm, by eye): "
          + "; ".join(f"{f} ({why})" for f, why in NOT_A_WORM.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
