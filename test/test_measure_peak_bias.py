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


def _series(root: Path, name: str, blur_px: dict[int, float], meta: dict, dtype=np.uint8) -> None:
    """Write a focus series of dark grains on a bright field, image z blurred by ``blur_px[z]``."""
    rng = np.random.default_rng(0)
    grains = np.zeros((256, 256))
    grains[rng.integers(0, 256, 300), rng.integers(0, 256, 300)] = 1.0
    sharp = 200.0 - 160.0 * np.minimum(cv2.dilate(grains, np.ones((3, 3))), 1.0)
    scale = 256.0 if dtype == np.uint16 else 1.0
    stack = root / "plates" / "lab" / name
    stack.mkdir(parents=True)
    for z, sigma in blur_px.items():
        image = cv2.GaussianBlur(sharp, (0, 0), sigma) if sigma > 0 else sharp
        cv2.imwrite(str(stack / f"z_{z}.png"), (image * scale).astype(dtype))
    (stack / "stack.yaml").write_text(yaml.safe_dump(meta))


def _cells(capsys) -> dict[tuple[str, str], list[str]]:
    """Return {(series, binned px): [one cell per measure]} of the printed table."""
    rows = [[c.strip() for c in line.split("|")[1:-1]] for line in capsys.readouterr().out.splitlines()
            if line.startswith("| lab/")]
    return {(r[0], r[4]): r[5:] for r in rows}


def test_peaks_in_images_and_steps_with_the_refines_contrast(tmp_path: Path, capsys):
    around_zero = {-2: 4.0, -1: 2.0, 0: 0.0, 1: 2.0, 2: 4.0}
    _series(tmp_path, "sharp_at_0", around_zero, {"best_index": 0, "step_um": 30.0})  # +-30 um: the next image
    _series(tmp_path, "labelled_minus_2", around_zero, {"best_index": -2, "step_um": 10.0}, np.uint16)
    _series(tmp_path, "sharp_at_end", {0: 4.0, 1: 2.0, 2: 0.0}, {"best_index": 1, "step_um": 30.0})
    _series(tmp_path, "unlabelled", around_zero, {"step_um": 30.0})
    assert load_benchmark("measure_peak_bias").main(["--real", str(tmp_path)]) == 0
    cells = _cells(capsys)
    assert sorted({name for name, _ in cells}) == ["lab/labelled_minus_2", "lab/sharp_at_0", "lab/sharp_at_end"]
    assert {px for _, px in cells} == {"256x256", "128x128", "64x64"}
    full = cells[("lab/sharp_at_0", "256x256")]
    assert [c.split(" (")[0] for c in full] == ["+0 / +0.0"] * 3
    assert all(float(c.split("(")[1].rstrip(")")) > 0 for c in full)  # a peak standing above its +-30 um neighbours
    # 10 um per image: +2 images = +4 motor steps; the images 30 um away are beyond the series: no contrast
    assert cells[("lab/labelled_minus_2", "256x256")] == ["+2 / +4.0 (-)"] * 3
    assert cells[("lab/sharp_at_end", "256x256")] == ["+1 / +6.0 (-)"] * 3
