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

"""Where the sign of a far defocus lives in the simulator's renders, and whether the model's input keeps it.

    PYTHONPATH=. .venv/bin/python benchmarks/far_band_cue.py [--look real_adult_mottled] [--fov-px 500] \
        [--scenes 40] [--model models/default.onnx] [--png benchmarks/far_band_cue.png] [--real /work/realworms/frames]

Scenes of the look (``core.optics.make_scene`` seeded by (2024, scene), 1-3 worms; not the held-out scenes of
``calibration.py``), each a render of the ``fov-px`` crop centred on its first worm at 4/3 of the ``model``'s
input side (128 px for 96), as training renders crops. Four readings:

1. **Which part differs between +d and -d**: noise-free intensity of the scene, of its worm alone (background,
   particles and scratches removed) and of its background alone (no worm); the rms of I(+d) - I(-d) over the
   window, in units of the mean light.
2. **One scalar cue, how dark the worm's core is**: (median - 0.5th percentile) of the camera frame (noise, 8 bit)
   at the ``model``'s input side, over either the median light (``contrast``) or the frame's standard deviation
   (``zscore``, what the model sees under per-image z-scoring). Its AUC between the +d and -d frames over the
   scenes: 0.5 = no cue, 0 or 1 a cue that alone tells the sign in every scene.
3. With ``--real DIR`` (sharp real frames, ``core.real_frames``): the same darkness over the median light on the
   detector's ``fov-px`` crop of each source, against the simulated scenes' at each offset. How far real worms'
   darkness spreads in focus, against how far it moves across the far band, says whether the cue would transfer.
4. A picture: the worm alone at +-d, and its difference.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from celegans_autofocus.core import optics
from celegans_autofocus.core.detection import crop_window

sys.path.insert(0, str(Path(__file__).resolve().parent))
from heldout import RENDER_OVERSAMPLE, model_spec  # noqa: E402

OFFSETS_STEPS = (25, 75, 125, 175)


def parts(scene: optics.Scene) -> dict[str, optics.Scene]:
    """Return the scene, its worms alone and its background alone."""
    def blank(t: optics.Texture) -> optics.Texture:
        return optics.Texture(np.zeros_like(t.values), t.origin_px, t.cell_px)

    none = optics.Balls(np.zeros((0, 2)), np.zeros(0), np.zeros(0), np.zeros(0))
    worm = replace(scene, particles=none, scratches=np.zeros((0, 6)), background_phase=blank(scene.background_phase),
                   background_absorb=blank(scene.background_absorb))
    return {"scene": scene, "worm alone": worm, "background alone": replace(scene, worms=())}


def auc(pos: list[float], neg: list[float]) -> float:
    """Probability that a +d value exceeds a -d one (ties count half)."""
    p, n = np.asarray(pos)[:, None], np.asarray(neg)[None, :]
    return float(np.mean(p > n) + 0.5 * np.mean(p == n))


def core_darkness(frame: np.ndarray, input_px: int) -> tuple[float, float]:
    """(darkness over the median light, darkness over the frame's std) of a camera frame at the model's size."""
    im = cv2.resize(frame.astype(np.float32), (input_px, input_px), interpolation=cv2.INTER_AREA)
    dark = float(np.median(im) - np.percentile(im, 0.5))
    return dark / float(np.median(im)), dark / float(im.std())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--look", default=optics.SIMULATOR_LOOK, choices=list(optics.LOOKS))
    parser.add_argument("--fov-px", type=int, default=500)
    parser.add_argument("--scenes", type=int, default=40)
    parser.add_argument("--model", type=Path, default=Path("models/default.onnx"), help="its input side is read")
    parser.add_argument("--png", type=Path, default=Path("benchmarks/far_band_cue.png"))
    parser.add_argument("--real", type=Path, help="folder of sharp real worm frames (core.real_frames)")
    args = parser.parse_args()
    config = optics.look_config(args.look)
    input_px = model_spec(args.model).input_px
    render = (round(input_px * RENDER_OVERSAMPLE),) * 2
    shape = (int(config.frame_height_px), int(config.frame_width_px))
    diff = {name: [] for name in ("scene", "worm alone", "background alone")}
    cue = {d: {"contrast": ([], []), "zscore": ([], [])} for d in OFFSETS_STEPS}
    in_focus = []
    pictures = []
    for s in range(args.scenes):
        rng = np.random.default_rng([2024, s])
        scene = optics.make_scene(rng, config, int(rng.integers(1, 4)))
        window = crop_window(scene.worms[0].centroid_px, args.fov_px, shape)
        in_focus.append(core_darkness(optics.StackRenderer(scene, config, render, window_px=window, seed=s,
                                                           max_offset_steps=1).frame(0.0), input_px)[0])
        for name, part in parts(scene).items():
            r = optics.StackRenderer(part, config, render, window_px=window, seed=s,
                                     max_offset_steps=max(OFFSETS_STEPS) + 10)
            row = []
            for d in OFFSETS_STEPS:
                a, b = r.intensity(d).astype(np.float64), r.intensity(-d).astype(np.float64)
                row.append(np.sqrt(np.mean((a - b) ** 2)) / np.mean((a + b) / 2))
                if name == "scene":
                    for k, offset in enumerate((d, -d)):
                        contrast, zscore = core_darkness(r.frame(offset), input_px)
                        cue[d]["contrast"][k].append(contrast)
                        cue[d]["zscore"][k].append(zscore)
                if name == "worm alone" and s < 3 and d == max(OFFSETS_STEPS):
                    pictures.append((a, b))
            diff[name].append(row)

    print(f"{args.look}, fov {args.fov_px} px, {args.scenes} scenes (seed 2024)\n")
    print("| rms of I(+d) - I(-d) / mean light (median over scenes) | "
          + " | ".join(f"d = {d}" for d in OFFSETS_STEPS) + " |\n|---|" + "---|" * len(OFFSETS_STEPS))
    for name, rows in diff.items():
        print(f"| {name} | " + " | ".join(f"{v:.3f}" for v in np.median(rows, axis=0)) + " |")
    print("\n| AUC of the worm's core darkness, +d vs -d frames | "
          + " | ".join(f"d = {d}" for d in OFFSETS_STEPS) + " |\n|---|" + "---|" * len(OFFSETS_STEPS))
    for norm in ("contrast", "zscore"):
        print(f"| over the {'median light (contrast)' if norm == 'contrast' else 'std (zscore)'} | "
              + " | ".join(f"{auc(*cue[d][norm]):.2f}" for d in OFFSETS_STEPS) + " |")

    if args.real is not None:
        from celegans_autofocus.core.real_frames import worm_crops

        print(f"\n| the worm's core darkness over the median light, {args.fov_px} px crops | n | median | min..max |"
              "\n|---|---|---|---|")
        rows = [("simulated, in focus", in_focus)]
        rows += [(f"simulated, {sign}{d}", cue[d]["contrast"][k]) for d in OFFSETS_STEPS[1:]
                 for k, sign in enumerate("+-")]
        rows += [(f"real: {name}", [core_darkness(c, input_px)[0] for c in crops[args.fov_px]])
                 for name, (_, crops) in worm_crops(args.real, [args.fov_px]).items()]
        for name, values in rows:
            if values:
                print(f"| {name} | {len(values)} | {np.median(values):.2f} | {min(values):.2f}..{max(values):.2f} |")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    d = max(OFFSETS_STEPS)
    fig, axes = plt.subplots(len(pictures), 3, figsize=(7.5, 2.6 * len(pictures)), squeeze=False)
    for row, (a, b) in zip(axes, pictures):
        v = float(np.abs(a - b).max())
        for ax, im, title, kw in ((row[0], b, f"worm alone, -{d}", {"cmap": "gray", "vmin": 0, "vmax": 1.1}),
                                  (row[1], a, f"worm alone, +{d}", {"cmap": "gray", "vmin": 0, "vmax": 1.1}),
                                  (row[2], a - b, f"(+{d}) - (-{d}), +-{v:.2f}", {"cmap": "RdBu_r", "vmin": -v,
                                                                                  "vmax": v})):
            ax.imshow(im, **kw)
            ax.set_title(title, fontsize=9)
            ax.axis("off")
    fig.suptitle(f"{args.look}, {args.fov_px} px: the worm's far-defocus sign (blue: darker on the plus side)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(args.png, dpi=60)
    print(f"\nwrote {args.png}")


if __name__ == "__main__":
    main()
