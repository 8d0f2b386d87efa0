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

"""Sanity floor on real frames: the focus model should answer near 0 on sharp worms.

    python benchmarks/real_image_check.py FOLDER [--model models/default.onnx] [--fov 250 375 500]
        [--um-per-px 1.55] [--sim N]

``celegans-autofocus check-real`` (commands/check_real.py: the table per source folder, through
``core.real_frames``, which ``train --real-frames`` uses too), plus a simulated control:

``--sim N`` adds the same pipeline on N simulated frames of the simulator's look (``core.optics.SIMULATOR_LOOK``)
and of looks randomised from it (core.randomize), at known offsets: in focus (|offset| <= 5) and across +-200
steps (MAE, sign accuracy beyond 20 steps).
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

from celegans_autofocus.commands import check_real
from celegans_autofocus.commands.check_real import NEAR_STEPS
from celegans_autofocus.core import optics, randomize
from celegans_autofocus.core.detection import DetectorConfig, WormDetector, crop_window
from celegans_autofocus.core.predictor import FocusPredictor, default_model_path
from celegans_autofocus.core.real_frames import reference_u8, worm_crop
from celegans_autofocus.core.sensor import UM_PER_PX


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    check_real.add_arguments(ap)
    ap.add_argument("--sim", type=int, default=0, metavar="N", help="also check N simulated frames per row")
    args = ap.parse_args(argv)
    rc = check_real.run(args)
    if rc or not args.sim:
        return rc
    model = FocusPredictor(args.model or default_model_path(), providers=["CPUExecutionProvider"])
    _sim_check(model, WormDetector(DetectorConfig()), args.sim, args.fov)
    return 0


def _sim_check(model: FocusPredictor, detector: WormDetector, n: int, fovs: list[int]) -> None:
    print(f"\nSimulated frames, same pipeline (seed 0; {n} per row)\n")
    print("| simulator | offsets | detector hits | fov px | median prediction (in focus) / MAE | "
          "sign acc. beyond 20 |")
    print("|---|---|---|---|---|---|")
    look = optics.look_config(optics.SIMULATOR_LOOK)
    for name, randomised in ((optics.SIMULATOR_LOOK, False), ("randomised", True)):
        for span in (5.0, 200.0):
            rng = np.random.default_rng(0)
            hits, pred, true = 0, {f: [] for f in fovs}, []
            for _ in range(n):
                config = randomize.random_config(rng, look) if randomised else look
                scene = optics.make_scene(rng, config, 1)
                side = int(np.ceil(max(fovs) * UM_PER_PX / config.um_per_px * 1.2))
                frame_hw = (config.frame_height_px, config.frame_width_px)
                window = crop_window(scene.worms[0].centroid_px, side, frame_hw)
                offset = float(rng.uniform(-span, span))
                renderer = optics.StackRenderer(scene, config, None, window, max_offset_steps=span + 1,
                                                seed=int(rng.integers(2**31)))
                img = reference_u8(renderer.frame(offset), config.um_per_px)
                found = detector.detect(img)
                if not found:
                    continue
                hits += 1
                true.append(offset)
                for fov in fovs:
                    pred[fov].append(model.predict(worm_crop(img, found[0].centroid_px, fov)))
            t = np.array(true)
            for fov in fovs:
                p = np.array(pred[fov])
                if not len(p):
                    continue
                far = np.abs(t) > NEAR_STEPS
                sign = f"{np.mean(np.sign(p[far]) == np.sign(t[far])):.2f}" if far.any() else "-"
                stat = f"{np.median(p):+.1f}" if span <= 5 else f"MAE {np.mean(np.abs(p - t)):.1f}"
                print(f"| {name} | +-{span:g} | {hits}/{n} | {fov} | {stat} | {sign} |")


if __name__ == "__main__":
    sys.exit(main())
