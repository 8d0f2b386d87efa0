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
    from celegans_autofocus.core.images import PreprocessSpec
    from celegans_autofocus.training.synthetic import RENDER_VERSION

    heldout = _load()
    spec = PreprocessSpec(input_px=32)
    small = heldout.held_out(spec, [500], views=1, seed=7, cache=tmp_path)
    large = heldout.held_out(spec, [1000], views=1, seed=7, cache=tmp_path)
    full = heldout.held_out(spec, [heldout.FULL], views=1, seed=7, cache=tmp_path)
    assert small[0].shape == (10, 32, 32) and np.all(np.abs(small[1]) <= 200)
    assert np.array_equal(small[1], large[1]) and not np.array_equal(small[0], large[0])
    assert not np.array_equal(small[1], full[1])
    assert set(small[2]) == {500} and set(large[2]) == {1000} and set(full[2]) == {heldout.FULL}
    again = heldout.held_out(spec, [500], views=1, seed=7, cache=tmp_path)
    for a, b in zip(again, small):
        assert np.array_equal(a, b)
    names = [f"heldout_32_7_1_{f}_r{RENDER_VERSION}.npz" for f in (0, 1000, 500)]
    assert sorted(p.name for p in tmp_path.iterdir()) == names
    with pytest.raises(ValueError, match="complete frames"):
        heldout.held_out(spec, [500, heldout.FULL], views=1, seed=7)


@pytest.mark.skipif(not TRAINING, reason="needs the [train] extra (torch)")
def test_held_out_renders_are_preprocessed_by_the_spec_and_cached_apart(tmp_path):
    """A contrast model's set keeps each image's own contrast (not unit variance), under a name of its own."""
    from celegans_autofocus.core.images import PreprocessSpec

    heldout = _load()
    zscored, _, _ = heldout.held_out(PreprocessSpec(input_px=32), [500], views=1, seed=7, cache=tmp_path)
    contrast_spec = PreprocessSpec(input_px=32, normalize="contrast")
    contrast, true, _ = heldout.held_out(contrast_spec, [500], views=1, seed=7, cache=tmp_path)
    np.testing.assert_allclose(zscored.std(axis=(1, 2)), 1.0, rtol=1e-2)
    assert not np.allclose(contrast.std(axis=(1, 2)), 1.0, rtol=0.05)
    assert len(list(tmp_path.iterdir())) == 2
    again, true_again, _ = heldout.held_out(contrast_spec, [500], views=1, seed=7, cache=tmp_path)
    assert np.array_equal(again, contrast) and np.array_equal(true_again, true)


def test_predict_reads_held_out_inputs_as_they_are_and_refuses_another_preprocessing(tmp_path):
    """The held-out images are preprocessed once: a model of that spec reads them as they are, another is refused."""
    from celegans_autofocus.core.images import PreprocessSpec
    from onnx_models import make_metadata, pixel_model

    heldout = _load()
    images = np.random.default_rng(0).standard_normal((3, 32, 32)).astype(np.float32)
    zscored = pixel_model(tmp_path / "z.onnx", a=2.0, row=1, col=2)
    spec = PreprocessSpec(input_px=32)
    assert heldout.model_spec(zscored) == spec
    np.testing.assert_allclose(heldout.predict(zscored, images, spec), 2.0 * images[:, 1, 2], rtol=1e-5)
    contrast = make_metadata(preprocess=PreprocessSpec(input_px=32, normalize="contrast").to_dict())
    with pytest.raises(ValueError, match="images were preprocessed by"):
        heldout.predict(pixel_model(tmp_path / "c.onnx", metadata=contrast), images, spec)
