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

"""Figures for the README: the simulator's signed defocus, and focus-measure curves of one stack.

Command: .venv/bin/python benchmarks/readme_figures.py --out docs
Writes docs/defocus_montage.png and docs/focus_curves.png (seeded, so re-runs match).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from celegans_autofocus.core.detection import crop_window  # noqa: E402
from celegans_autofocus.core.focus import DEFAULT_MEASURE, MEASURES  # noqa: E402
from celegans_autofocus.core.optics import OpticsConfig, StackRenderer, make_scene  # noqa: E402

OFFSETS_STEPS = (-100, -40, -16, 0, 16, 40, 100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs"))
    parser.add_argument("--seed", type=int, default=3)
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    config = OpticsConfig()
    scene = make_scene(np.random.default_rng(args.seed), config, n_worms=1)
    window_px = crop_window(scene.worms[0].centroid_px, 500, (config.frame_height_px, config.frame_width_px))
    crop = StackRenderer(scene, config, window_px=window_px, seed=args.seed)

    fig, axes = plt.subplots(1, len(OFFSETS_STEPS), figsize=(2.2 * len(OFFSETS_STEPS), 2.6))
    for ax, offset in zip(axes, OFFSETS_STEPS):
        ax.imshow(crop.frame(offset), cmap="gray", vmin=0, vmax=255)
        ax.set_title(f"{offset:+d} steps\n({offset * config.step_um:+.0f} µm)", fontsize=9)
        ax.axis("off")
    fig.suptitle("One worm (500 px crop, 1.55 µm/px) at signed offsets to focus: "
                 "above and below focus look different", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out / "defocus_montage.png", dpi=110)
    plt.close(fig)

    z_steps = np.arange(-150, 151, 3)
    fig, ax = plt.subplots(figsize=(7, 3.6))
    frames = [crop.frame(z) for z in z_steps]
    for name, fn in MEASURES.items():
        values = np.array([fn(f) for f in frames])
        span = np.ptp(values) or 1.0
        style = dict(lw=2.5, color="k") if name == DEFAULT_MEASURE else dict(lw=1.2, alpha=0.8)
        ax.plot(z_steps, (values - values.min()) / span, label=name, **style)
    ax.axvline(0, color="r", ls="--", lw=1, label="true best plane")
    ax.set_xlabel("offset to focus (steps, 1 step = 5 µm)")
    ax.set_ylabel("focus measure (normalised)")
    ax.legend(fontsize=7, ncol=2)
    ax.set_title("Focus curves of one simulated stack (crop view)", fontsize=10)
    fig.tight_layout()
    fig.savefig(args.out / "focus_curves.png", dpi=110)
    plt.close(fig)
    print(f"wrote {args.out / 'defocus_montage.png'} and {args.out / 'focus_curves.png'}")


if __name__ == "__main__":
    main()
