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

"""Focus measures of a grayscale image. Larger means sharper (for the measure's own model).

All measures are per-pixel means, so values do not scale with image size. ``x`` is the
column (fast) axis. Definitions (I = image as float64):

- ``vollath_f4``: mean I(x,y)I(x+1,y) - mean I(x,y)I(x+2,y)   (autocorrelation difference)
- ``vollath_f5``: mean I(x,y)I(x+1,y) - mean(I)^2            (the paper's label; variance-like)
- ``brenner``: mean (I(x+2,y) - I(x,y))^2
- ``tenengrad``: mean of Gx^2 + Gy^2 with 3x3 Sobel kernels, interior pixels only
- ``normalized_variance``: var(I) / mean(I)
- ``laplacian_variance``: variance of the 4-neighbour Laplacian, interior pixels only
- ``detail_skewness``: minus the skewness of the detail D = I - G*I (G: Gaussian, sigma 8 px,
  mirrored borders), -mean(D^3) / mean(D^2)^1.5; 0 for an image without detail

Why ``detail_skewness``: a thin specimen is passive, so at focus its brightfield image is the
background minus sharp dark detail (absorption, light refracted out of the pupil): strongly
negatively skewed. Out of focus its phase structure (worm body, lawn) adds zero-mean bright and
dark fringes that grow with defocus and make variance- and gradient-type measures peak away
from focus (benchmarks/focus_measures.md). Skewness is scale-free, so it also ignores the
brightness level.
"""
from __future__ import annotations

from typing import Callable

import cv2
import numpy as np

from .images import ImageError, check_image


def _as_float(image: np.ndarray) -> np.ndarray:
    check_image(image)
    if image.ndim != 2:
        raise ImageError(f"focus measures expect a 2-D grayscale image, got shape {image.shape}")
    if image.shape[1] < 3 or image.shape[0] < 3:
        raise ImageError(f"image too small for focus measures: {image.shape}")
    return image.astype(np.float64, copy=False)


def vollath_f4(image: np.ndarray) -> float:
    i = _as_float(image)
    return float((i[:, :-1] * i[:, 1:]).mean() - (i[:, :-2] * i[:, 2:]).mean())


def vollath_f5(image: np.ndarray) -> float:
    i = _as_float(image)
    return float((i[:, :-1] * i[:, 1:]).mean() - i.mean() ** 2)


def brenner(image: np.ndarray) -> float:
    i = _as_float(image)
    return float(((i[:, 2:] - i[:, :-2]) ** 2).mean())


def tenengrad(image: np.ndarray) -> float:
    i = _as_float(image)
    gx = (i[:-2, 2:] + 2 * i[1:-1, 2:] + i[2:, 2:]) - (i[:-2, :-2] + 2 * i[1:-1, :-2] + i[2:, :-2])
    gy = (i[2:, :-2] + 2 * i[2:, 1:-1] + i[2:, 2:]) - (i[:-2, :-2] + 2 * i[:-2, 1:-1] + i[:-2, 2:])
    return float((gx * gx + gy * gy).mean())


def normalized_variance(image: np.ndarray) -> float:
    i = _as_float(image)
    mean = i.mean()
    if mean <= 0:
        raise ImageError("normalized_variance needs a positive mean intensity")
    return float(i.var() / mean)


def laplacian_variance(image: np.ndarray) -> float:
    i = _as_float(image)
    lap = i[:-2, 1:-1] + i[2:, 1:-1] + i[1:-1, :-2] + i[1:-1, 2:] - 4 * i[1:-1, 1:-1]
    return float(lap.var())


#: Gaussian sigma (px) of the background removed by :func:`detail_skewness`.
DETAIL_SIGMA_PX = 8.0


def detail_skewness(image: np.ndarray) -> float:
    i = _as_float(image)
    detail = i - cv2.GaussianBlur(i, (0, 0), DETAIL_SIGMA_PX, borderType=cv2.BORDER_REFLECT_101)
    m2 = float((detail * detail).mean())
    if m2 <= 1e-12 * max(float((i * i).mean()), 1.0):
        return 0.0
    return float(-(detail**3).mean() / m2**1.5)


MEASURES: dict[str, Callable[[np.ndarray], float]] = {
    "vollath_f4": vollath_f4,
    "vollath_f5": vollath_f5,
    "brenner": brenner,
    "tenengrad": tenengrad,
    "normalized_variance": normalized_variance,
    "laplacian_variance": laplacian_variance,
    "detail_skewness": detail_skewness,
}


def get_measure(name: str) -> Callable[[np.ndarray], float]:
    """Look up a focus measure by name, with a clear error listing the valid ones."""
    try:
        return MEASURES[name]
    except KeyError:
        raise ValueError(f"unknown focus measure {name!r}; choose one of {', '.join(MEASURES)}") from None


#: The measure ``label`` uses unless told otherwise (chosen by benchmarks/focus_measures.md).
DEFAULT_MEASURE = "detail_skewness"
