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

"""Crop stacks written as `crop` writes them, without the detector (the tests' frames are too small for it)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from celegans_autofocus.core.dataset.io import read_image, write_image
from celegans_autofocus.core.detection import crop_image, crop_window


def add_crop_stacks(root: Path, crop_px: int, suffix: str) -> None:
    """Write ``<stack><suffix>`` per full stack: one window around its first worm for every z."""
    for stack in sorted((root / "plates").glob("*/*")):
        meta = yaml.safe_load((stack / "stack.yaml").read_text())
        crop_dir = stack.parent / f"{stack.name}{suffix}"
        crop_dir.mkdir()
        window = None
        for path in sorted(stack.glob("z_*.png")):
            gray = read_image(path)
            window = window or crop_window(meta["worms"][0]["centroid_px"], crop_px, gray.shape)
            write_image(crop_dir / path.name, np.ascontiguousarray(crop_image(gray, window)))
        (crop_dir / "stack.yaml").write_text(yaml.safe_dump(
            {"step_um": 5.0, "best_index": meta["best_index"], "true_best_index": meta["true_best_index"],
             "parent": stack.name, "window_px": list(window), "fov_px": crop_px}))
