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

"""The paper's training augmentation on preprocessed images: random rotation and flips (or quarter turns).

Rotation keeps the square size and fills the corners by reflection, so no artificial
zero-valued edges appear that the model could key on. Defocus is rotation- and
mirror-invariant, so the target offset does not change.
"""
from __future__ import annotations

import cv2
import numpy as np


def augment(image: np.ndarray, rng: np.random.Generator, rotation_deg: float,
            hflip: bool, vflip: bool, rot90: bool = False) -> np.ndarray:
    """Return a randomly rotated (uniform in +-rotation_deg, then ``rot90``: 0-3 quarter turns) and flipped copy.

    ``image`` is a 2-D float32 array.
    """
    out = image
    if rotation_deg > 0:
        angle = float(rng.uniform(-rotation_deg, rotation_deg))
        h, w = image.shape
        matrix = cv2.getRotationMatrix2D((w / 2 - 0.5, h / 2 - 0.5), angle, 1.0)
        out = cv2.warpAffine(image, matrix, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
    if rot90:
        out = np.rot90(out, int(rng.integers(4)))
    if hflip and rng.random() < 0.5:
        out = out[:, ::-1]
    if vflip and rng.random() < 0.5:
        out = out[::-1, :]
    return np.ascontiguousarray(out, dtype=np.float32)
