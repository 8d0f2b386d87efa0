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

"""core/plate_tilt.py: the plate surface learnt from verified best planes predicts z at a new position."""
from __future__ import annotations

import math

import numpy as np
import pytest

from celegans_autofocus.core.plate_tilt import PlateTilt


def plate(x, y):
    return 40.0 + 0.02 * (x - 1000) - 0.03 * (y - 800)  # steps; a plate tilted 0.02 and -0.03 steps per px


def test_learns_the_tilt_along_a_worm_path_and_predicts_another_worm_within_noise():
    rng = np.random.default_rng(0)
    tilt = PlateTilt(noise_steps=2.0)
    assert tilt.predict(0.0, 0.0) is None and tilt.slope_steps_per_px() is None
    for x, y in rng.uniform([200, 200], [1800, 1400], size=(40, 2)):  # two worms crawling over the plate
        tilt.add(x, y, plate(x, y) + rng.normal(0, 2.0))
    dzdx, dzdy = tilt.slope_steps_per_px()
    assert dzdx == pytest.approx(0.02, abs=0.005) and dzdy == pytest.approx(-0.03, abs=0.005)
    z, sigma = tilt.predict(300.0, 1300.0)
    assert abs(z - plate(300.0, 1300.0)) <= 2 * sigma and sigma < 4.0


def test_from_one_spot_the_prediction_far_away_is_honestly_uncertain():
    tilt = PlateTilt(noise_steps=2.0, slope_sigma_steps_per_px=0.05)
    for _ in range(10):
        tilt.add(500.0, 500.0, 12.0)
    z_near, s_near = tilt.predict(505.0, 500.0)
    z_far, s_far = tilt.predict(1500.0, 500.0)
    assert z_near == pytest.approx(12.0, abs=0.5) and z_far == pytest.approx(12.0, abs=0.5)
    assert s_near < 3.0 and s_far > 40.0               # 1000 px at the prior slope sigma 0.05: ~50 steps


def test_bad_input_is_refused_and_old_samples_are_forgotten():
    tilt = PlateTilt(max_samples=3)
    with pytest.raises(ValueError, match="finite"):
        tilt.add(1.0, math.nan, 0.0)
    with pytest.raises(ValueError, match="noise_steps"):
        PlateTilt(noise_steps=0.0)
    for z in (100.0, 100.0, 0.0, 0.0, 0.0):
        tilt.add(10.0, 10.0, z)
    assert len(tilt.samples) == 3 and tilt.predict(10.0, 10.0)[0] == pytest.approx(0.0)
    assert tilt.predict(math.inf, 0.0) is None
    tilt.clear()
    assert tilt.predict(10.0, 10.0) is None
