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

"""Where a model's held-out error comes from: its worst scenes, every offset of each, as the model sees them.

    PYTHONPATH=. .venv/bin/python benchmarks/error_anatomy.py MODEL.onnx [--fov-px 500] [--look real_adult_mottled] \
        [--scenes 3] [--png benchmarks/error_anatomy.png]

The held-out renders of ``benchmarks/calibration.py`` (``heldout.held_out``: 64 scenes of seed 2024 x 10
offsets uniform in +-200 steps, one crop of ``fov-px`` around a worm per scene). Prints the model's error per
signed true offset (calibration.py's ``--by-offset`` table) and draws, for the ``scenes`` scenes with the largest
single error, all ten of their renders sorted by true offset, each titled "true -> predicted" (the worst one in
red): the model's own 96 px input.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from calibration import by_offset
from celegans_autofocus.core.optics import LOOKS, SIMULATOR_LOOK
from celegans_autofocus.core.predictor import FocusPredictor
from heldout import OFFSETS_PER_VIEW, held_out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--fov-px", type=int, default=500)
    parser.add_argument("--look", default=SIMULATOR_LOOK, choices=list(LOOKS))
    parser.add_argument("--views", type=int, default=64)
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--scenes", type=int, default=3)
    parser.add_argument("--png", type=Path, default=Path("benchmarks/error_anatomy.png"))
    args = parser.parse_args()
    predictor = FocusPredictor(args.model, providers=["CPUExecutionProvider"], intra_op_threads=1)
    images, true, _ = held_out(predictor.spec, [args.fov_px], args.views, args.seed, look=args.look)
    offsets, sigmas = predictor.predict_inputs(images)
    print(f"{predictor.name}, {args.look}, fov {args.fov_px} px: MAE {np.abs(offsets - true).mean():.1f} steps\n")
    print("| model | true offset (steps) | n | MAE | mean error | wrong sign (\\|true\\| > 20) | share of the summed "
          "\\|error\\| | median sigma |\n|---|---|---|---|---|---|---|---|")
    print("\n".join(by_offset(predictor.name, offsets, true, sigmas)))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    worst_per_scene = np.abs(offsets - true).reshape(-1, OFFSETS_PER_VIEW).max(axis=1)
    scenes = np.argsort(worst_per_scene)[::-1][:args.scenes]
    fig, axes = plt.subplots(len(scenes), OFFSETS_PER_VIEW, figsize=(2 * OFFSETS_PER_VIEW, 2.2 * len(scenes)),
                             squeeze=False)
    for row, scene in zip(axes, scenes):
        idx = scene * OFFSETS_PER_VIEW + np.arange(OFFSETS_PER_VIEW)
        idx = idx[np.argsort(true[idx])]
        worst = idx[np.argmax(np.abs(offsets[idx] - true[idx]))]
        for ax, i in zip(row, idx):
            ax.imshow(images[i], cmap="gray")
            ax.set_title(f"{true[i]:+.0f} -> {offsets[i]:+.0f} (s {sigmas[i]:.0f})" if sigmas is not None
                         else f"{true[i]:+.0f} -> {offsets[i]:+.0f}", color="red" if i == worst else "black",
                         fontsize=9)
            ax.axis("off")
    fig.suptitle(f"{predictor.name} on held-out {args.look} crops ({args.fov_px} px): true -> predicted steps "
                 "(sigma); the worst scenes")
    fig.tight_layout()
    fig.savefig(args.png, dpi=60)
    print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
