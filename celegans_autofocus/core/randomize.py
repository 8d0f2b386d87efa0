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

"""Domain randomisation of the simulator: seeded random OpticsConfigs that span real worm frames.

``random_config(rng)`` draws microscope, specimen and camera parameters in ranges fitted so that the
statistics of real in-focus frames from five public sources fall inside what the simulator renders
(``benchmarks/sim_vs_real.md``). Physics stays physics: every variant is the same scalar Fresnel
model, so the sign of defocus (``core.optics`` convention) is kept; only the specimen, the
illumination and the camera change. ``OpticsConfig()`` itself stays the look the bundled model was
trained on.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .optics import OpticsConfig

#: Worm stages: (length um, mean-to-max body width um), L1 .. adult.
STAGES = {"L1": ((230, 300), (11, 16)), "L2": ((330, 420), (16, 22)), "L3": ((450, 560), (22, 30)),
          "L4": ((600, 800), (30, 42)), "adult": ((850, 1250), (45, 80))}


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))


def random_config(rng: np.random.Generator, base: OpticsConfig = OpticsConfig(),
                  stage: str | None = None) -> OpticsConfig:
    """One randomised variant of ``base`` (stage drawn 40 % adult, 15 % each larval stage unless given)."""
    if stage is None:
        stage = str(rng.choice(list(STAGES), p=[0.15, 0.15, 0.15, 0.15, 0.4]))
    length_um, width_um = STAGES[stage]
    na = float(rng.uniform(0.05, 0.12))
    jpeg = rng.random() < 0.5
    blur = rng.random() < 0.6
    return replace(
        base,
        um_per_px=float(rng.uniform(1.0, 3.0)),
        na=na,
        condenser_na=float(rng.uniform(0.4, 1.0)) * na,
        n_worm=float(rng.uniform(1.337, 1.375)),
        worm_length_um=tuple(float(v) for v in length_um),
        worm_width_um=tuple(float(v) for v in width_um),
        body_absorb_per_um=_log_uniform(rng, 0.0001, 0.008),
        cuticle_absorb_per_um=float(rng.uniform(0.0, 0.015)),
        inclusion_scale=float(rng.uniform(0.02, 1.2)),
        lawn_scale=float(rng.choice([0.0, rng.uniform(0.05, 0.5), rng.uniform(0.5, 1.5)], p=[0.35, 0.4, 0.25])),
        agar_scale=_log_uniform(rng, 0.003, 1.2),
        particle_density_scale=_log_uniform(rng, 0.02, 3.0),
        eggs_per_mm2=float(rng.uniform(0.0, 8.0)),
        tracks=int(rng.integers(0, 6)),
        brightness=(0.3, 0.9),
        vignetting=float(rng.uniform(0.0, 0.4)),
        full_well_e=_log_uniform(rng, 2000, 60000),
        read_noise_e=float(rng.uniform(2, 10)),
        gamma=float(rng.uniform(0.7, 1.4)),
        jpeg_quality=int(rng.integers(50, 96)) if jpeg else 0,
        motion_blur_px=float(rng.uniform(0.5, 4.0)) if blur else 0.0,
        blur_sigma_px=float(rng.uniform(0.0, 2.0)),
    )
