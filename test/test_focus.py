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

"""Focus measures against values worked out by hand on a 3x4 image, and their bad-input errors."""
from __future__ import annotations

import numpy as np
import pytest

from celegans_autofocus.core import focus
from celegans_autofocus.core.images import ImageError

# rows are y, columns x
IMAGE = np.array([[1, 2, 3, 4],
                  [2, 4, 6, 8],
                  [0, 1, 0, 1]], dtype=np.uint8)


def test_vollath_f4_by_hand():
    # x-neighbour products: 2+6+12 + 8+24+48 + 0+0+0 = 100 over 9; x+2 products: 3+8 + 12+32 + 0+1 = 56 over 6
    assert focus.vollath_f4(IMAGE) == pytest.approx(100 / 9 - 56 / 6)


def test_vollath_f5_by_hand():
    # mean = 32/12 = 8/3 -> 100/9 - 64/9 = 4
    assert focus.vollath_f5(IMAGE) == pytest.approx(4.0)


def test_brenner_by_hand():
    # (3-1)^2 + (4-2)^2 + (6-2)^2 + (8-4)^2 + 0 + 0 = 40 over 6
    assert focus.brenner(IMAGE) == pytest.approx(40 / 6)


def test_tenengrad_by_hand():
    # interior (1,1): gx = (3+12+0)-(1+4+0) = 10, gy = (0+2+0)-(1+4+3) = -6 -> 136
    # interior (1,2): gx = (4+16+1)-(2+8+1) = 10, gy = (1+0+1)-(2+6+4) = -10 -> 200
    assert focus.tenengrad(IMAGE) == pytest.approx((136 + 200) / 2)


def test_normalized_variance_by_hand():
    # E[I^2] = 152/12, mean 8/3 -> var = 38/3 - 64/9 = 50/9; / (8/3) = 25/12
    assert focus.normalized_variance(IMAGE) == pytest.approx(25 / 12)


def test_laplacian_variance_by_hand():
    # interior Laplacians: 2+1+2+6-16 = -5 and 3+0+4+8-24 = -9 -> variance 4
    assert focus.laplacian_variance(IMAGE) == pytest.approx(4.0)


def test_detail_skewness_by_hand():
    # sigma 8 px >> the mirrored period of a 3x4 image, so the background is the mirror-weighted
    # mean: rows weighted 1/4, 2/4, 1/4 and columns 1/6, 2/6, 2/6, 1/6 -> 3.25.
    # D = I - 3.25: sum D^2 = 70.75, sum D^3 = 22.0625 (12 pixels).
    expected = -(22.0625 / 12) / (70.75 / 12) ** 1.5
    assert focus.detail_skewness(IMAGE) == pytest.approx(expected, rel=1e-3)


def test_detail_skewness_sign_and_scale():
    flat = np.full((40, 50), 120.0)
    assert focus.detail_skewness(flat) == 0.0
    dark_dot = flat.copy()
    dark_dot[20, 25] = 60
    assert focus.detail_skewness(dark_dot) > 1  # dark detail on a bright background: focused look
    assert focus.detail_skewness(255 - dark_dot) == pytest.approx(-focus.detail_skewness(dark_dot))
    assert focus.detail_skewness(2 * dark_dot + 7) == pytest.approx(focus.detail_skewness(dark_dot))


@pytest.mark.parametrize("name", list(focus.MEASURES))
@pytest.mark.parametrize("bad, message", [
    (np.zeros((0, 4)), "empty"),
    (np.array([[1.0, np.nan, 2.0, 3.0]] * 3), "non-finite"),
    (np.zeros((3, 4, 3), np.uint8), "2-D"),
    (np.zeros((2, 4), np.uint8), "too small"),
])
def test_bad_input_is_rejected(name, bad, message):
    with pytest.raises(ImageError, match=message):
        focus.MEASURES[name](bad)


def test_normalized_variance_needs_positive_mean():
    with pytest.raises(ImageError, match="positive mean"):
        focus.normalized_variance(np.zeros((3, 4)))


def test_registry():
    assert focus.get_measure("vollath_f5") is focus.vollath_f5  # the paper's label stays available
    assert focus.DEFAULT_MEASURE in focus.MEASURES
    with pytest.raises(ValueError, match="unknown focus measure 'f6'.*vollath_f5"):
        focus.get_measure("f6")


def test_prefiltered_measures_average_white_noise_away():
    """``NAME@SIGMA``: the measure of the image pre-filtered by a Gaussian of SIGMA px; noise keeps 1/(4 pi sigma^2)."""
    noise = np.random.default_rng(0).normal(128, 10, (200, 200))
    assert focus.get_measure("brenner@2")(noise) == pytest.approx(focus.brenner(focus.prefiltered(noise, 2.0)))
    raw_var, var_2px = focus.prefiltered(noise, 1e-3).var(), focus.prefiltered(noise, 2.0).var()
    assert var_2px / raw_var == pytest.approx(1 / (4 * np.pi * 2.0**2), rel=0.2)
    values = focus.measure_values(noise.astype(np.uint8), focus.RULE_CURVES)  # one pre-filter per scale, same values
    assert list(values) == list(focus.RULE_CURVES)
    assert all(values[m] == pytest.approx(focus.get_measure(m)(noise.astype(np.uint8))) for m in focus.RULE_CURVES)
    assert set(focus.RULE_MEASURES) < set(focus.RULE_CURVES) and "vollath_f5@1" in focus.RULE_CURVES
    for bad in ("brenner@", "brenner@x", "brenner@0", "brenner@-1", "brenner@inf"):
        with pytest.raises(ValueError, match="positive number of px"):
            focus.get_measure(bad)
    with pytest.raises(ValueError, match="unknown focus measure 'f6@1'"):
        focus.get_measure("f6@1")
