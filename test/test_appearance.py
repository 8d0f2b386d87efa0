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

"""Worm appearance statistics (core.appearance) on drawn images whose answers are known."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from celegans_autofocus.core import appearance


def drawn_worm(width_px: int = 30, body: float = 100.0, rim: float | None = None, halo: float = 0.0,
               noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """Draw a 500 px frame, background 200, with a sinusoidal worm of ``width_px`` at level ``body``."""
    img = np.full((500, 500), 200.0, np.float32)
    x = np.arange(60, 440)
    pts = np.stack([x, 250 + 60 * np.sin(x / 50.0)], 1).astype(np.int32)
    if halo:
        cv2.polylines(img, [pts], False, 200.0 * (1 + halo), width_px + 8)
    cv2.polylines(img, [pts], False, body if rim is None else rim, width_px)
    if rim is not None:
        cv2.polylines(img, [pts], False, body, width_px - 8)
    if noise:
        img += np.random.default_rng(seed).normal(0, noise, img.shape).astype(np.float32)
    return img


def test_contrast_width_and_noise_of_a_drawn_worm():
    s = appearance.crop_stats(drawn_worm(noise=2.0), (250, 250))
    assert s.contrast == pytest.approx(-0.5, abs=0.03)
    assert s.core == pytest.approx(-0.5, abs=0.03)
    assert 27 <= s.width_px <= 34
    assert s.noise == pytest.approx(2.0 / 200, rel=0.25)
    assert abs(s.ring_mean) < 0.02 and s.ring_p95 < 0.03


def test_rim_and_halo_are_seen():
    plain = appearance.crop_stats(drawn_worm(), (250, 250))
    dark_rim = appearance.crop_stats(drawn_worm(body=140, rim=60), (250, 250))
    assert dark_rim.rim < dark_rim.core - 0.15 and abs(plain.rim - plain.core) < 0.05
    halo = appearance.crop_stats(drawn_worm(halo=0.15), (250, 250))
    assert halo.ring_p95 > 0.1 > plain.ring_p95


def test_pixel_size_estimate_and_resampling():
    img = drawn_worm(width_px=30)
    assert appearance.estimate_um_per_px(img, mean_width_um=60.0) == pytest.approx(2.0, rel=0.15)
    half = appearance.to_reference_scale(img, 0.775)  # 2x finer than the reference: halved
    assert half.shape == (250, 250)
    found = appearance.find_and_crop(appearance.to_reference_scale(img, 1.55), 300)
    assert found is not None and found[0].shape == (300, 300)


def test_no_worm_is_an_error():
    with pytest.raises(ValueError):
        appearance.crop_stats(np.full((200, 200), 150.0, np.float32))
