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

"""Domain randomisation: every variant keeps the physical sign of defocus, checked through the optics."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from celegans_autofocus.core import optics, randomize
from celegans_autofocus.core.detection import crop_window

STEPS = 8  # 40 um: inside the focal length of every stage's body lens (an L1's is ~60-190 um)


def _view(config: optics.OpticsConfig, seed: int):
    """Return a renderer of a window around one worm and the px of the middle half of its centre-line."""
    rng = np.random.default_rng(seed)
    scene = optics.make_scene(rng, config, 1)
    worm = scene.worms[0]
    x0, y0, w, h = worm.bbox_px
    side = int(min(max(w, h) + 40, 900))
    window = crop_window(worm.centroid_px, side, (config.frame_height_px, config.frame_width_px))
    out = max(64, min(side, 256))
    renderer = optics.StackRenderer(scene, config, (out, out), window, seed=seed, max_offset_steps=STEPS + 2)
    n = len(worm.centerline_px)
    mid = (worm.centerline_px[n // 4: 3 * n // 4] - window[:2]) * (out / side)
    ij = np.clip(np.floor(mid).astype(int), 0, out - 1)
    return renderer, ij


def _variant_view(seed: int, stage: str | None = None):
    config = randomize.random_config(np.random.default_rng(seed), stage=stage)
    return (config, *_view(config, seed))


@pytest.mark.parametrize("seed", range(16))
def test_every_variant_keeps_the_sign_of_defocus(seed):
    """Check the transport of intensity.

    Behind the worm (dz > 0, offset < 0) its lens brightens the axis, in front (offset > 0) it darkens it,
    whatever the absorption, lawn, illumination, stage or camera.
    """
    config, renderer, ij = _variant_view(seed)
    axis = {d: float(renderer.frame(d)[ij[:, 1], ij[:, 0]].astype(float).mean()) for d in (-STEPS, STEPS)}
    assert axis[-STEPS] > axis[STEPS] + 1.0, (axis, config)


@pytest.mark.parametrize("end", ["low", "high"])
@pytest.mark.parametrize("variant", [*randomize.VARIANTS, "stage"])
def test_each_variant_at_each_end_keeps_the_sign_of_defocus(variant, end):
    """One variant at one end of its ranges, the rest the default look: the camera frame keeps the sign.

    The same transport-of-intensity signature as above (+d and -d renders, not the labels): the worm's axis is
    brighter behind focus than in front of it.
    """
    config = randomize.variant_config(variant, end)
    renderer, ij = _view(config, 7)
    axis = {d: float(renderer.frame(d)[ij[:, 1], ij[:, 0]].astype(float).mean()) for d in (-STEPS, STEPS)}
    assert axis[-STEPS] > axis[STEPS] + 1.0, (variant, end, axis)


def test_variant_config_sets_only_its_group():
    base = optics.OpticsConfig()
    low = randomize.variant_config("NA and condenser", "low")
    assert low.na == 0.05 and low.condenser_na == pytest.approx(0.4 * 0.05) and low.gamma == base.gamma
    assert randomize.variant_config("exposure", "high").brightness == (0.9, 0.9)
    assert randomize.variant_config("stage", "low").worm_width_um == (11.0, 16.0)
    with pytest.raises(ValueError, match="unknown variant"):
        randomize.variant_config("colour", "low")
    with pytest.raises(ValueError, match="end must be"):
        randomize.variant_config("gamma", "middle")


@pytest.mark.parametrize("stage", ["L1", "adult"])
def test_sign_holds_noise_free_for_each_extreme_stage(stage):
    """The noise-free intensity (the physics alone) is ordered through focus for an L1 and an adult."""
    config, renderer, ij = _variant_view(100, stage)
    axis = {d: float(renderer.intensity(d)[ij[:, 1], ij[:, 0]].mean()) for d in (-STEPS, 0, STEPS)}
    assert axis[-STEPS] > axis[0] > axis[STEPS], (axis, config)


def test_variants_differ_and_are_reproducible():
    a = randomize.random_config(np.random.default_rng(1))
    b = randomize.random_config(np.random.default_rng(1))
    c = randomize.random_config(np.random.default_rng(2))
    assert a == b and a != c
    configs = [randomize.random_config(np.random.default_rng(s)) for s in range(200)]
    for field in ("um_per_px", "body_absorb_per_um", "gamma", "full_well_e", "inclusion_scale"):
        lo, hi, kind = randomize.RANGES[field]
        values = [getattr(c, field) for c in configs]
        if kind == "log":
            values, lo, hi = np.log(values), np.log(lo), np.log(hi)
        assert lo <= min(values) < lo + 0.2 * (hi - lo) and hi - 0.2 * (hi - lo) < max(values) <= hi
    assert {c.worm_width_um for c in configs} == {v[1] for v in randomize.STAGES.values()}
    assert any(c.jpeg_quality for c in configs) and any(not c.jpeg_quality for c in configs)


def test_only_adult_scenes_have_laid_eggs():
    """A scene is one stage (a synchronised culture): larvae lay no eggs, adults do (in the drawn range)."""
    for stage in ("L1", "L2", "L3", "L4"):
        assert all(randomize.random_config(np.random.default_rng(s), stage=stage).eggs_per_mm2 == 0.0
                   for s in range(20))
    eggs = [randomize.random_config(np.random.default_rng(s), stage="adult").eggs_per_mm2 for s in range(20)]
    lo, hi, _ = randomize.RANGES["eggs_per_mm2"]
    assert all(lo <= e <= hi for e in eggs) and np.mean(eggs) > 0.25 * hi


def test_defaults_render_as_before_the_new_options():
    """New options at their defaults draw nothing and change nothing (the bundled model's look)."""
    base = optics.OpticsConfig()
    same = replace(base, eggs_per_mm2=0.0, tracks=0, gamma=1.0, jpeg_quality=0, motion_blur_px=0.0)
    s1 = optics.make_scene(np.random.default_rng(5), base, 2)
    s2 = optics.make_scene(np.random.default_rng(5), same, 2)
    np.testing.assert_array_equal(s1.background_phase.values, s2.background_phase.values)
    extras = optics.make_scene(np.random.default_rng(5), replace(base, eggs_per_mm2=5.0, tracks=4), 2)
    assert len(extras.particles.radius_um) > len(s1.particles.radius_um)
    assert np.abs(extras.background_phase.values - s1.background_phase.values).max() > 0.05
