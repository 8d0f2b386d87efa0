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

"""A small Kalman filter on the best focal plane: position ``z_steps`` and drift rate ``v_steps_per_s``.

Constant-velocity model with white-noise acceleration: the best plane of a worm crawling on a
tilted plate moves at a slowly changing rate. Measurements are absolute best-plane positions with
their standard deviation: a measure-guided refine (a few steps), a CNN jump target (the model's
error), a converged search. A worm switch keeps the rate (the plate tilt) and forgets the position.
Pure numbers; time in seconds on the caller's clock.
"""
from __future__ import annotations

import math

import numpy as np


class BestPlaneTracker:
    """``update(t_s, z_steps, sigma_steps)`` fuses a measurement; ``predict_z(t_s)`` extrapolates.

    ``accel_sigma``: standard deviation of the drift-rate change, steps/s per sqrt(s) (process noise);
    ``max_rate_steps_per_s`` caps the estimated rate, so a pair of noisy measurements cannot send the
    lens running away.
    """

    def __init__(self, accel_sigma: float = 0.5, max_rate_steps_per_s: float = 20.0,
                 rate_sigma0_steps_per_s: float = 5.0) -> None:
        if not (accel_sigma >= 0 and max_rate_steps_per_s > 0 and rate_sigma0_steps_per_s > 0):
            raise ValueError("BestPlaneTracker: accel_sigma >= 0, max_rate_steps_per_s > 0 and "
                             "rate_sigma0_steps_per_s > 0 are required")
        self.accel_sigma = float(accel_sigma)
        self.max_rate_steps_per_s = float(max_rate_steps_per_s)
        self.rate_sigma0 = float(rate_sigma0_steps_per_s)
        self.x: np.ndarray | None = None   # [z_steps, v_steps_per_s] at self.t_s
        self.P = np.zeros((2, 2))
        self.t_s = -math.inf
        self.n_updates = 0

    @property
    def initialised(self) -> bool:
        return self.x is not None

    def _propagate(self, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        dt = max(0.0, t_s - self.t_s)
        F = np.array([[1.0, dt], [0.0, 1.0]])
        q = self.accel_sigma ** 2
        Q = q * np.array([[dt ** 3 / 3, dt ** 2 / 2], [dt ** 2 / 2, dt]])
        return F @ self.x, F @ self.P @ F.T + Q

    def update(self, t_s: float, z_steps: float, sigma_steps: float) -> None:
        """Fuse one best-plane measurement ``z_steps`` +- ``sigma_steps`` taken at ``t_s``."""
        if not all(math.isfinite(v) for v in (t_s, z_steps, sigma_steps)) or sigma_steps <= 0:
            raise ValueError(f"BestPlaneTracker.update needs finite t_s, z_steps and sigma_steps > 0, "
                             f"got {t_s!r}, {z_steps!r}, {sigma_steps!r}")
        if self.x is None:
            self.x = np.array([float(z_steps), 0.0])
            self.P = np.diag([sigma_steps ** 2, self.rate_sigma0 ** 2])
        else:
            x, P = self._propagate(t_s)
            H = np.array([1.0, 0.0])
            S = P[0, 0] + sigma_steps ** 2
            K = P[:, 0] / S
            x = x + K * (z_steps - x[0])
            P = P - np.outer(K, H @ P)
            x[1] = float(np.clip(x[1], -self.max_rate_steps_per_s, self.max_rate_steps_per_s))
            self.x, self.P = x, P
        self.t_s = max(self.t_s, float(t_s))
        self.n_updates += 1

    def predict_z(self, t_s: float) -> float | None:
        """Best-plane estimate at ``t_s`` (None before the first measurement)."""
        if self.x is None:
            return None
        return float(self._propagate(t_s)[0][0])

    def sigma_z(self, t_s: float) -> float:
        """Return the standard deviation of :meth:`predict_z` (inf before the first measurement)."""
        if self.x is None:
            return math.inf
        return float(math.sqrt(self._propagate(t_s)[1][0, 0]))

    def rate_sigma(self) -> float:
        """Return the standard deviation of the drift-rate estimate (inf before the first measurement)."""
        return math.inf if self.x is None else float(math.sqrt(self.P[1, 1]))

    @property
    def rate_steps_per_s(self) -> float:
        return 0.0 if self.x is None else float(self.x[1])

    def forget_position(self, t_s: float, sigma_steps: float = 1e3, z_steps: float | None = None) -> None:
        """Handle a worm switch: the new target lies at an unknown height (or near ``z_steps`` +- ``sigma_steps``).

        The drift rate is kept.
        """
        if self.x is None:
            if z_steps is not None:
                self.update(t_s, z_steps, sigma_steps)
            return
        self.x, self.P = self._propagate(t_s)
        if z_steps is not None:
            self.x[0] = float(z_steps)
        self.P[0, 0] = sigma_steps ** 2
        self.P[0, 1] = self.P[1, 0] = 0.0
        self.t_s = max(self.t_s, float(t_s))
