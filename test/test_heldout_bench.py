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

"""benchmarks/heldout.py, the held-out renders and scores of the paper's studies."""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from benchmark_scripts import load_benchmark

TRAINING = importlib.util.find_spec("torch") is not None


def _load():
    return load_benchmark("heldout")


def test_summary_scores_against_predicting_zero():
    heldout = _load()
    true = np.array([-100.0, -10.0, 30.0, 150.0])
    exact = heldout.summary(true.copy(), true)
    assert exact["mae_steps"] == 0 and exact["sign_accuracy"] == 1 and exact["predict_zero_mae_steps"] == 72.5
    zero = heldout.summary(np.zeros(4), true)
    assert zero["mae_steps"] == zero["predict_zero_mae_steps"] == 72.5
    flipped = heldout.summary(-true, true)  # |true| <= 20 (the -10) does not count for the sign
    assert flipped["sign_accuracy"] == 0 and flipped["n"] == 4
    assert zero["mae_by_abs_offset_steps"] == {"0-20": 10.0, "100-150": 100.0, "20-50": 30.0, "150-inf": 150.0}
    assert flipped["mae_by_abs_offset_steps"] == {"0-20": 20.0, "100-150": 200.0, "20-50": 60.0, "150-inf": 300.0}


@pytest.mark.skipif(not TRAINING, reason="needs the [train] extra (torch)")
def test_crop_sizes_are_paired_and_renders_are_cached(tmp_path):
    """Every crop size draws the same scenes and offsets; complete frames others; a second call reads the cache."""
    from celegans_autofocus.training.synthetic import RENDER_VERSION

    heldout = _load()
    small = heldout.held_out(tmp_path, 32, 500, views=1, seed=7)
    large = heldout.held_out(tmp_path, 32, 1000, views=1, seed=7)
    full = heldout.held_out(tmp_path, 32, heldout.FULL, views=1, seed=7)
    assert small[0].shape == (10, 32, 32) and np.all(np.abs(small[1]) <= 200)
    assert np.array_equal(small[1], large[1]) and not np.array_equal(small[0], large[0])
    assert not np.array_equal(small[1], full[1])
    again = heldout.held_out(tmp_path, 32, 500, views=1, seed=7)
    assert np.array_equal(again[0], small[0]) and np.array_equal(again[1], small[1])
    names = [f"heldout_32_7_1_{f}_r{RENDER_VERSION}.npz" for f in (0, 1000, 500)]
    assert sorted(p.name for p in tmp_path.iterdir()) == names


def test_predict_reads_held_out_inputs_as_they_are_and_refuses_another_normalisation(tmp_path):
    """The held-out images are z-scored once: a z-scored model reads them as they are, a contrast model is refused."""
    from celegans_autofocus.core.images import PreprocessSpec
    from onnx_models import make_metadata, pixel_model

    heldout = _load()
    images = np.random.default_rng(0).standard_normal((3, 32, 32)).astype(np.float32)
    zscored = pixel_model(tmp_path / "z.onnx", a=2.0, row=1, col=2)
    np.testing.assert_allclose(heldout.predict(zscored, images), 2.0 * images[:, 1, 2], rtol=1e-5)
    contrast = make_metadata(preprocess=PreprocessSpec(input_px=32, normalize="contrast").to_dict())
    with pytest.raises(ValueError, match="held-out images are z-scored"):
        heldout.predict(pixel_model(tmp_path / "c.onnx", metadata=contrast), images)
