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

``random_config(rng)`` draws microscope, specimen and camera parameters in ``RANGES``, fitted so that
the statistics of real in-focus frames from public sources fall inside what the simulator renders
(``benchmarks/sim_vs_real.md``). Physics stays physics: every variant is the same scalar Fresnel
model, so the sign of defocus (``core.optics`` convention) is kept; only the specimen, the
illumination and the camera change. ``VARIANTS`` groups the ranges as the issue names them;
``variant_config`` sets one group to one end of its ranges (what the sign tests render).
``OpticsConfig()`` itself stays the default look (``core.optics.LOOKS``), the base of the bundled model's first stages.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from .optics import OpticsConfig

#: Worm stages: (length um, mean-to-max body width um), L1 .. adult.
STAGES = {"L1": ((230, 300), (11, 16)), "L2": ((330, 420), (16, 22)), "L3": ((450, 560), (22, 30)),
          "L4": ((600, 800), (30, 42)), "adult": ((850, 1250), (45, 80))}
#: Stage probabilities: 40 % adult, 15 % each larval stage.
STAGE_P = (0.15, 0.15, 0.15, 0.15, 0.4)

#: Drawn ranges, OpticsConfig field -> (low, high, "lin" | "log" | "int"); ``condenser_fraction`` is the
#: condenser NA as a fraction of ``na``, ``brightness`` the background level (a range drawn per scene).
RANGES = {
    "um_per_px": (1.0, 3.0, "lin"),
    "na": (0.05, 0.12, "lin"),
    "condenser_fraction": (0.4, 1.0, "lin"),
    "n_worm": (1.334, 1.375, "lin"),
    "body_absorb_per_um": (0.0001, 0.008, "log"),
    "cuticle_absorb_per_um": (0.0, 0.015, "lin"),
    "inclusion_scale": (0.005, 1.2, "log"),
    "lawn_scale": (0.0, 1.5, "lin"),
    "agar_scale": (0.001, 1.2, "log"),
    "particle_density_scale": (0.005, 3.0, "log"),
    "eggs_per_mm2": (0.0, 8.0, "lin"),  # adult scenes only (random_config)
    "tracks": (0, 5, "int"),
    "brightness": (0.3, 0.9, "lin"),
    "vignetting": (0.0, 0.4, "lin"),
    "full_well_e": (700.0, 200000.0, "log"),
    "read_noise_e": (2.0, 10.0, "lin"),
    "gamma": (0.7, 2.2, "lin"),  # 2.2: an sRGB-encoded frame (most JPEG cameras)
    "jpeg_quality": (50, 95, "int"),
    "motion_blur_px": (0.5, 4.0, "lin"),
    "blur_sigma_px": (0.0, 4.0, "lin"),  # camera px; covers LOOKS["real_adult"] (3.5)
    "sharpen": (0.3, 2.0, "lin"),
}
#: Share of scenes without lawn, with a thin one (up to LAWN_THIN) and a thick one; with JPEG, motion blur,
#: sharpening.
LAWN_P = (0.35, 0.4, 0.25)
LAWN_THIN = (0.05, 0.5)
JPEG_P = 0.5
MOTION_BLUR_P = 0.6
SHARPEN_P = 0.4

#: The randomised variants (issue 9), each a group of RANGES; ``stage`` draws from STAGES.
VARIANTS = {
    "absorption vs phase": ("n_worm", "body_absorb_per_um", "cuticle_absorb_per_um", "inclusion_scale"),
    "lawn and agar": ("lawn_scale", "agar_scale", "particle_density_scale"),
    "NA and condenser": ("na", "condenser_fraction"),
    "magnification": ("um_per_px",),
    "eggs and tracks": ("eggs_per_mm2", "tracks"),
    "gamma": ("gamma",),
    "exposure": ("brightness",),
    "vignetting": ("vignetting",),
    "noise": ("full_well_e", "read_noise_e"),
    "JPEG": ("jpeg_quality",),
    "motion blur": ("motion_blur_px",),
    "lens blur": ("blur_sigma_px",),
    "sharpening": ("sharpen",),
}


def _draw(rng: np.random.Generator, field: str) -> float:
    lo, hi, kind = RANGES[field]
    if kind == "log":
        return float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
    if kind == "int":
        return int(rng.integers(lo, hi + 1))
    return float(rng.uniform(lo, hi))


def _with(base: OpticsConfig, values: dict, stage: str | None = None) -> OpticsConfig:
    """Return ``base`` with RANGES fields set (``condenser_fraction``, ``brightness`` translated), a stage's size."""
    values = dict(values)
    if "condenser_fraction" in values:
        values["condenser_na"] = values.pop("condenser_fraction") * values.get("na", base.na)
    if "brightness" in values and not isinstance(values["brightness"], tuple):
        values["brightness"] = (values["brightness"],) * 2
    if stage is not None:
        length_um, width_um = STAGES[stage]
        values["worm_length_um"] = tuple(float(v) for v in length_um)
        values["worm_width_um"] = tuple(float(v) for v in width_um)
    return replace(base, **values)


def random_config(rng: np.random.Generator, base: OpticsConfig = OpticsConfig(),
                  stage: str | None = None) -> OpticsConfig:
    """One randomised variant of ``base`` (stage drawn with STAGE_P unless given)."""
    if stage is None:
        stage = str(rng.choice(list(STAGES), p=STAGE_P))
    values = {f: _draw(rng, f) for f in ("na", "condenser_fraction", "um_per_px", "n_worm", "body_absorb_per_um",
                                         "cuticle_absorb_per_um", "inclusion_scale")}
    lawn_lo, lawn_hi, _ = RANGES["lawn_scale"]
    values["lawn_scale"] = float(rng.choice([lawn_lo, rng.uniform(*LAWN_THIN), rng.uniform(LAWN_THIN[1], lawn_hi)],
                                            p=LAWN_P))
    values.update({f: _draw(rng, f) for f in ("agar_scale", "particle_density_scale", "eggs_per_mm2", "tracks",
                                              "vignetting", "full_well_e", "read_noise_e", "gamma",
                                              "blur_sigma_px")})
    if stage != "adult":  # one stage per scene is a synchronised culture: only gravid adults lay eggs
        values["eggs_per_mm2"] = 0.0
    values["brightness"] = RANGES["brightness"][:2]
    values["jpeg_quality"] = _draw(rng, "jpeg_quality") if rng.random() < JPEG_P else 0
    values["motion_blur_px"] = _draw(rng, "motion_blur_px") if rng.random() < MOTION_BLUR_P else 0.0
    values["sharpen"] = _draw(rng, "sharpen") if rng.random() < SHARPEN_P else 0.0
    return _with(base, values, stage)


def variant_config(variant: str, end: str, base: OpticsConfig = OpticsConfig()) -> OpticsConfig:
    """Return ``base`` with one VARIANTS group (or ``stage``: L1 / adult) at the low or high end of its ranges."""
    if end not in ("low", "high"):
        raise ValueError(f"end must be 'low' or 'high', got {end!r}")
    if variant == "stage":
        return _with(base, {}, "L1" if end == "low" else "adult")
    if variant not in VARIANTS:
        raise ValueError(f"unknown variant {variant!r}; one of {sorted(VARIANTS) + ['stage']}")
    return _with(base, {f: RANGES[f][0 if end == "low" else 1] for f in VARIANTS[variant]})
