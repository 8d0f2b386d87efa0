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

"""Fit the simulator's specimen and camera look to real in-focus adult worms (``core.optics.LOOKS["real_adult"]``).

    PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/calibrate_optics.py /work/realworms/frames

The target is the median of ``core.appearance``'s statistics on one real source's frames (default
``biondong``: adults on a plate at 1.49 um/px, the simulator's own scale), measured exactly as
benchmarks/sim_vs_real.py measures them. A seeded random search draws ``--candidates`` variants of
``OpticsConfig()`` in SEARCH (every candidate renders the same ``--n`` scenes in focus: common random
numbers) and scores each by LOSS; the best one is then measured again on ``--check-n`` fresh scenes, next
to every real source, the default look and ``real_adult`` (the winner of the committed run, rounded).
``--figure`` draws in-focus crops of both looks next to real ones. benchmarks/calibrate_optics.md has the run.
"""
from __future__ import annotations

import argparse
import dataclasses
import math
import sys
from pathlib import Path

import cv2
import numpy as np
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
import sim_vs_real  # noqa: E402

from celegans_autofocus.core import appearance, optics  # noqa: E402
from celegans_autofocus.core.detection import crop_window  # noqa: E402
from celegans_autofocus.core.real_frames import folder_um_per_px  # noqa: E402

#: name -> (low, high, log-uniform): the parameters fitted (what shapes an in-focus worm and the field). The
#: objective's NA stays 0.08: it sets the depth of field (~17 steps; the paper: 25 steps off still looks sharp).
SEARCH = {
    "n_worm": (1.335, 1.38, False),
    "condenser_na": (0.02, 0.08, False),
    "body_absorb_per_um": (0.0005, 0.008, True),
    "cuticle_absorb_per_um": (0.001, 0.05, True),
    "inclusion_scale": (0.5, 3.0, True),
    "particle_density_scale": (0.2, 1.5, True),
    "blur_sigma_px": (0.0, 4.0, False),
    "full_well_e": (5000.0, 60000.0, True),
}
#: statistic -> (tolerance, compared as a log ratio): LOSS = sum of (difference / tolerance)^2.
LOSS = {"contrast": (0.05, False), "core": (0.05, False), "rim": (0.05, False), "ring_mean": (0.03, False),
        "ring_p95": (0.03, False), "texture": (0.3, True), "noise": (0.3, True), "width_px": (0.1, True)}


def draw(rng: np.random.Generator) -> dict:
    out = {}
    for name, (lo, hi, log) in SEARCH.items():
        out[name] = float(math.exp(rng.uniform(math.log(lo), math.log(hi))) if log else rng.uniform(lo, hi))
    return out


def medians(rows: list[dict]) -> dict:
    return {k: float(np.median(sim_vs_real._values(rows, k))) for k in LOSS}


def loss(stats: dict, target: dict) -> float:
    total = 0.0
    for k, (tol, log) in LOSS.items():
        d = math.log(stats[k] / target[k]) if log else stats[k] - target[k]
        total += (d / tol) ** 2
    return total


def measure(params: dict, n: int, seed: int) -> dict:
    config = dataclasses.replace(optics.OpticsConfig(), **params)
    return medians(sim_vs_real.sim_stats(n, seed, lambda rng: config, 500))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("real_root", type=Path)
    ap.add_argument("--target", default="biondong", help="real source folder to fit")
    ap.add_argument("--candidates", type=int, default=150)
    ap.add_argument("--n", type=int, default=8, help="scenes per candidate")
    ap.add_argument("--check-n", type=int, default=60, help="fresh scenes for the final comparison")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--figure", type=Path, help="write a montage of real and simulated in-focus crops here")
    args = ap.parse_args(argv)

    reals = {}
    for folder in sorted(p for p in args.real_root.iterdir() if (p / "frames.yaml").exists()):
        info, rows = sim_vs_real.real_stats(folder, 500)
        if info["um_per_px"] <= sim_vs_real.MAX_CHECKED_UM_PER_PX:
            reals[info["source"]] = medians(rows)
    target = reals[args.target]

    rng = np.random.default_rng(args.seed)
    scored = [({}, loss(measure({}, args.n, args.seed), target))]
    for _ in range(args.candidates):
        params = draw(rng)
        scored.append((params, loss(measure(params, args.n, args.seed), target)))
    scored.sort(key=lambda s: s[1])
    print(f"Search: {args.candidates} candidates x {args.n} scenes, target {args.target}; "
          f"default loss {next(lv for p, lv in scored if not p):.1f}. Best five:\n")
    print("| loss | " + " | ".join(SEARCH) + " |")
    print("|---" * (len(SEARCH) + 1) + "|")
    for params, lv in scored[:5]:
        print(f"| {lv:.1f} | " + " | ".join(f"{params[k]:.4g}" for k in SEARCH) + " |")

    best = scored[0][0]
    check = {"sim default look": measure({}, args.check_n, args.seed + 1),
             "sim best of this search": measure(best, args.check_n, args.seed + 1),
             "sim real_adult look": measure(optics.LOOKS["real_adult"], args.check_n, args.seed + 1)}
    print(f"\nCheck on {args.check_n} fresh scenes (medians; loss against {args.target}):\n")
    print("| set | loss | " + " | ".join(LOSS) + " |")
    print("|---" * (len(LOSS) + 2) + "|")
    for name, stats in [*reals.items(), *check.items()]:
        print(f"| {name} | {loss(stats, target):.1f} | " + " | ".join(f"{stats[k]:.3f}" for k in LOSS) + " |")
    print("\nBest parameters: " + ", ".join(f"{k}={v:.4g}" for k, v in best.items()))
    if args.figure:
        figure(args.real_root / args.target, args.figure, args.seed + 2)
        print(f"wrote {args.figure}")
    return 0


def _sim_crop(params: dict, rng: np.random.Generator) -> np.ndarray:
    config = dataclasses.replace(optics.OpticsConfig(), **params)
    scene = optics.make_scene(rng, config, 1)
    window = crop_window(scene.worms[0].centroid_px, 500, (config.frame_height_px, config.frame_width_px))
    return optics.StackRenderer(scene, config, None, window, max_offset_steps=1).frame(0.0)


def figure(real_folder: Path, out: Path, seed: int, per_row: int = 4) -> None:
    """In-focus 500 px crops: real frames of the target source, the default look, the real_adult look."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = yaml.safe_load((real_folder / "frames.yaml").read_text())
    um = folder_um_per_px(real_folder)
    real = []
    for f in meta["frames"][::max(1, len(meta["frames"]) // per_row)][:per_row]:
        gray = appearance.to_reference_scale(cv2.imread(str(real_folder / f["file"]), cv2.IMREAD_GRAYSCALE), um)
        found = appearance.find_and_crop(gray, 500)
        real.append(found[0] if found else gray[:500, :500])
    rows = {f"real ({real_folder.name})": real,
            "default look": [_sim_crop({}, np.random.default_rng(seed + i)) for i in range(per_row)],
            "real_adult look": [_sim_crop(optics.LOOKS["real_adult"], np.random.default_rng(seed + i))
                                for i in range(per_row)]}
    fig, axes = plt.subplots(len(rows), per_row, figsize=(2.2 * per_row, 2.3 * len(rows)))
    for r, (name, crops) in enumerate(rows.items()):
        for c, crop in enumerate(crops):
            axes[r, c].imshow(crop, cmap="gray", vmin=0, vmax=255)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(name)
    fig.suptitle("In focus, 500 px at 1.55 um/px (same scenes in the two simulated rows)")
    fig.tight_layout()
    fig.savefig(out, dpi=90)


if __name__ == "__main__":
    sys.exit(main())
