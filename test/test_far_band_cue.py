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

"""benchmarks/far_band_cue.py: the scene split into its worm and its background, the AUC, the darkness cue."""
from __future__ import annotations

import numpy as np
import pytest

from benchmark_scripts import load_benchmark
from celegans_autofocus.core import optics

cue = load_benchmark("far_band_cue")


def test_auc_by_hand():
    assert cue.auc([2.0, 3.0], [1.0, 2.0]) == pytest.approx(0.875)  # 3 of 4 pairs above, one tie
    assert cue.auc([0.0], [1.0]) == 0.0


def test_the_worm_alone_and_the_background_alone_split_the_scene():
    config = optics.look_config(optics.SIMULATOR_LOOK)
    scene = optics.make_scene(np.random.default_rng(1), config, 2)
    parts = cue.parts(scene)
    worm, background = parts["worm alone"], parts["background alone"]
    assert parts["scene"] is scene and worm.worms == scene.worms and background.worms == ()
    assert len(worm.particles.xy_px) == 0 and len(worm.scratches) == 0
    assert not worm.background_phase.values.any() and not worm.background_absorb.values.any()
    assert background.background_absorb is scene.background_absorb and len(background.particles.xy_px) > 0


def test_core_darkness_reads_a_darker_worm_as_darker_in_contrast_units_only():
    frame = np.full((200, 200), 200, np.uint8)
    pale, dark = frame.copy(), frame.copy()
    pale[90:110, 20:180], dark[90:110, 20:180] = 150, 60
    (pale_contrast, pale_z), (dark_contrast, dark_z) = cue.core_darkness(pale, 96), cue.core_darkness(dark, 96)
    assert dark_contrast > 2 * pale_contrast and dark_z == pytest.approx(pale_z, rel=1e-3)
