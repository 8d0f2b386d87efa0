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

"""Broad ``detail_skewness`` tops of simulated stacks, read six ways (benchmarks/labelling.md, "The old miss").

Reads the ``--json`` files of ``benchmarks/labelling.py`` (each stack's focus curves), no rendering:

    python benchmarks/labelling.py --per-variant 6 --seed 3001 --json /tmp/labelling_3001.json
    python benchmarks/broad_tops.py /tmp/labelling_3000.json /tmp/labelling_3001.json

For every simulated stack whose ``detail_skewness`` top (within 2% of its range) is wider than 2 x the
agreement tolerance, the plane by: the top's middle (the old rule), the skewness curve's half-maximum
midpoint, its mirror centre (the z that best maps the curve onto itself over +-25 samples), ``brenner``'s
top middle, that kept inside the skewness top, and ``brenner``'s half-maximum midpoint kept inside the top
(``core.focus.best_plane`` now). Then, per file, how often a whole-curve centre alone is within tolerance.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from celegans_autofocus.core import focus  # noqa: E402
from celegans_autofocus.core.dataset.labelling import AGREE_STEPS  # noqa: E402

MIRROR_SAMPLES = 25
READINGS = ("skew top middle (old)", "skew half-max", "skew mirror", "brenner top middle",
            "brenner top, in the top", "brenner half-max, in the top (new)")


def mirror_centre(z: np.ndarray, curve: np.ndarray, half_samples: int = MIRROR_SAMPLES) -> float | None:
    """Return the z (on the half-sample grid) about which ``curve`` best mirrors onto itself over +-half_samples."""
    best = None
    for c2 in range(2 * half_samples, 2 * (curve.size - 1 - half_samples) + 1):  # c2: twice the centre index
        right = np.arange(c2 // 2 + 1, c2 // 2 + 1 + half_samples)
        err = float(np.mean((curve[right] - curve[c2 - right]) ** 2))
        if best is None or err < best[0]:
            best = (err, (z[c2 // 2] + z[(c2 + 1) // 2]) / 2)
    return None if best is None else float(best[1])


def curves_of(row: dict) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    z = np.array(sorted(int(k) for k in row["curves"]["brenner"]))
    return z, {m: np.array([float(c[str(k)] if str(k) in c else c[k]) for k in z]) for m, c in row["curves"].items()}


def readings(z: np.ndarray, c: dict[str, np.ndarray]) -> tuple[tuple[int, int], list[float]]:
    skew, grad = c["detail_skewness"], c["brenner"]
    middle, lo, hi = focus._peak(z, skew)
    grad_top = focus._peak(z, grad)[0]
    return (lo, hi), [middle, focus.half_max_centre(z, skew), mirror_centre(z, skew), grad_top,
                      float(np.clip(grad_top, lo, hi)), float(np.clip(round(focus.half_max_centre(z, grad)), lo, hi))]


def main() -> int:
    for path in map(Path, sys.argv[1:]):
        rows = [r for r in json.loads(path.read_text()) if r["set"] == "sim"]
        whole = {"skew half-max": 0, "skew mirror": 0, "brenner mirror": 0, "tenengrad mirror": 0}
        for r in rows:
            z, c = curves_of(r)
            t, tol = r["truth"], r["tolerance"]
            for name, centre in (("skew half-max", focus.half_max_centre(z, c["detail_skewness"])),
                                 ("skew mirror", mirror_centre(z, c["detail_skewness"])),
                                 ("brenner mirror", mirror_centre(z, c["brenner"])),
                                 ("tenengrad mirror", mirror_centre(z, c["tenengrad"]))):
                whole[name] += centre is not None and abs(centre - t) <= tol
            (lo, hi), picks = readings(z, c)
            if hi - lo > 2 * AGREE_STEPS:
                cells = " | ".join(f"{p:.0f} ({abs(p - t):.0f})" for p in picks)
                print(f"| {path.stem} {r['group']}/{r['stack']} ({t}), top {lo}..{hi} | {cells} |")
        print(f"{path.stem}: whole-curve centres within {rows[0]['tolerance']} steps of the truth, of {len(rows)}: "
              + ", ".join(f"{k} {v}" for k, v in whole.items()))
    print("columns:", " | ".join(READINGS))
    return 0


if __name__ == "__main__":
    sys.exit(main())
