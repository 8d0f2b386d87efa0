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

"""The plate surface learnt online: best-plane z as a plane over the target's image position.

Worms crawl on an agar surface that is tilted and not quite flat, so the best focal plane depends on
where the worm is. Each verified best plane (the lens in focus by the measure) at the target's
position ``(x_px, y_px)`` is a sample; a Bayesian least-squares plane ``z = a + b (x - x0) + c (y - y0)``
over the last ``max_samples`` samples predicts z, with its standard deviation, at another position:
where a new target worm lies after a switch. The slopes have a zero-mean prior (``slope_sigma_steps_per_px``),
so a history along one line or at one spot predicts with the honest, growing uncertainty away from it
(no three points from the user, as OpenAutoScope asks). Pure numbers; positions in image pixels of a fixed
camera, z in motor steps.
"""
from __future__ import annotations

import math
from collections import deque

import numpy as np


class PlateTilt:
    """``add(x_px, y_px, z_steps)`` a verified best plane; ``predict(x_px, y_px)`` -> (z_steps, sigma_steps) or None.

    ``noise_steps``: the error of one sample (refine precision plus the worm's own height);
    ``slope_sigma_steps_per_px``: prior standard deviation of the tilt; ``max_samples``: the most recent samples
    kept (the plate may also drift in time); ``min_samples``: samples needed before any prediction.
    """

    def __init__(self, noise_steps: float = 4.0, slope_sigma_steps_per_px: float = 0.05, max_samples: int = 200,
                 min_samples: int = 1) -> None:
        if not (noise_steps > 0 and slope_sigma_steps_per_px > 0 and max_samples >= 1 and min_samples >= 1):
            raise ValueError(f"PlateTilt: noise_steps > 0, slope_sigma_steps_per_px > 0, max_samples >= 1 and "
                             f"min_samples >= 1 are required, got {noise_steps}, {slope_sigma_steps_per_px}, "
                             f"{max_samples}, {min_samples}")
        self.noise_steps = float(noise_steps)
        self.slope_sigma = float(slope_sigma_steps_per_px)
        self.min_samples = int(min_samples)
        self.samples: deque[tuple[float, float, float]] = deque(maxlen=int(max_samples))

    def add(self, x_px: float, y_px: float, z_steps: float) -> None:
        """Add a verified best plane ``z_steps`` with the target at ``(x_px, y_px)``; non-finite input raises."""
        if not all(math.isfinite(float(v)) for v in (x_px, y_px, z_steps)):
            raise ValueError(f"PlateTilt.add needs finite x_px, y_px, z_steps, got {x_px!r}, {y_px!r}, {z_steps!r}")
        self.samples.append((float(x_px), float(y_px), float(z_steps)))

    def clear(self) -> None:
        self.samples.clear()

    def _fit(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(centre [x0, y0], weights [a, b, c], posterior covariance of the weights)."""
        s = np.asarray(self.samples)
        centre = s[:, :2].mean(axis=0)
        X = np.column_stack([np.ones(len(s)), s[:, 0] - centre[0], s[:, 1] - centre[1]])
        noise2 = self.noise_steps ** 2
        prior = np.diag([0.0, 1.0 / self.slope_sigma ** 2, 1.0 / self.slope_sigma ** 2])  # flat on the offset
        cov = np.linalg.inv(X.T @ X / noise2 + prior)
        return centre, cov @ X.T @ s[:, 2] / noise2, cov

    def slope_steps_per_px(self) -> tuple[float, float] | None:
        """Return the learnt tilt (dz/dx, dz/dy) in steps per pixel, or None before ``min_samples`` samples."""
        if len(self.samples) < self.min_samples:
            return None
        _, w, _ = self._fit()
        return float(w[1]), float(w[2])

    def predict(self, x_px: float, y_px: float) -> tuple[float, float] | None:
        """Return (z_steps, sigma_steps) of the best plane at ``(x_px, y_px)``; None before ``min_samples`` samples.

        sigma includes one sample's noise: it is the error to expect for one worm lying there.
        """
        if len(self.samples) < self.min_samples or not (math.isfinite(x_px) and math.isfinite(y_px)):
            return None
        centre, w, cov = self._fit()
        v = np.array([1.0, x_px - centre[0], y_px - centre[1]])
        return float(v @ w), float(math.sqrt(v @ cov @ v + self.noise_steps ** 2))
