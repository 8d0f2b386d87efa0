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

"""benchmarks/measure_peak_bias.py --real: per series and binning, each measure's peak against the published plane."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import yaml

from benchmark_scripts import load_benchmark


def _series(root: Path, name: str, best: int, blur_px: list[float]) -> None:
    """Write a focus series of dark grains on a bright field, blurred by ``blur_px`` per image (index = z)."""
    rng = np.random.default_rng(0)
    grains = np.zeros((256, 256))
    grains[rng.integers(0, 256, 300), rng.integers(0, 256, 300)] = 1.0
    sharp = 200.0 - 160.0 * np.minimum(cv2.dilate(grains, np.ones((3, 3))), 1.0)
    stack = root / "plates" / "lab" / name
    stack.mkdir(parents=True)
    for z, sigma in enumerate(blur_px):
        image = cv2.GaussianBlur(sharp, (0, 0), sigma) if sigma > 0 else sharp
        cv2.imwrite(str(stack / f"z_{z}.png"), np.clip(image, 0, 255).astype(np.uint8))
    (stack / "stack.yaml").write_text(yaml.safe_dump({"best_index": best, "step_um": 1.0}))


def test_rows_give_each_measures_peak_against_the_published_plane(tmp_path: Path, capsys):
    _series(tmp_path, "sharp_at_2", 2, [4.0, 2.0, 0.0, 2.0, 4.0])
    _series(tmp_path, "labelled_wrong", 0, [4.0, 2.0, 0.0, 2.0, 4.0])
    assert load_benchmark("measure_peak_bias").main(["--real", str(tmp_path)]) == 0
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| lab/")]
    assert [r[:3] for r in rows[:3]] == [["lab/labelled_wrong", "5", "256x256"], ["lab/labelled_wrong", "5", "128x128"],
                                         ["lab/labelled_wrong", "5", "64x64"]]
    by_name = {(r[0], r[2]): r[3:] for r in rows}
    full = by_name[("lab/sharp_at_2", "256x256")]
    assert [cell.split()[0] for cell in full] == ["+0", "+0", "+0"]
    assert all(float(cell.split("(")[1].rstrip(")")) > 0 for cell in full)  # a peak between two images
    assert [cell.split()[0] for cell in by_name[("lab/labelled_wrong", "256x256")]] == ["+2", "+2", "+2"]
