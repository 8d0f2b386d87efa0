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

"""FocusPredictor and the uncertainty output (metadata ``sigma_output``), on tiny real ONNX models."""
from __future__ import annotations

import numpy as np
import pytest

from celegans_autofocus.core.images import PreprocessSpec, preprocess
from celegans_autofocus.core.predictor import FocusPredictor, ModelError, NonFiniteOutputError
from onnx_models import make_metadata, pixel_model, sigma_model


@pytest.fixture
def frames():
    rng = np.random.default_rng(5)
    return [rng.integers(0, 256, (60, 80), dtype=np.uint8) for _ in range(3)]


@pytest.mark.parametrize("dynamic", [True, False])
def test_sigma_is_read_in_steps_single_and_batched(tmp_path, frames, dynamic):
    p = FocusPredictor(sigma_model(tmp_path / "s.onnx", a=4.0, b=1.0, c=2.0, d=0.5, output_scale=-3.0,
                                   dynamic_batch=dynamic))
    assert p.has_sigma
    pixels = [preprocess(f, PreprocessSpec(input_px=32))[0, 0] for f in frames]
    for f, px in zip(frames, pixels):
        offset, sigma = p.predict_with_sigma(f)
        assert offset == pytest.approx(-3.0 * (4.0 * px + 1.0), rel=1e-5)
        assert sigma == pytest.approx(3.0 * (2.0 * abs(px) + 0.5), rel=1e-5)  # |output_scale|: a width
        assert p.predict(f) == offset
    offsets, sigmas = p.predict_batch_with_sigma(frames)
    np.testing.assert_allclose(sigmas, [3.0 * (2.0 * abs(px) + 0.5) for px in pixels], rtol=1e-5)
    np.testing.assert_allclose(offsets, p.predict_batch(frames))
    empty_offsets, empty_sigmas = p.predict_batch_with_sigma([])
    assert empty_offsets.shape == empty_sigmas.shape == (0,)


def test_single_output_models_keep_working_without_sigma(tmp_path, frames):
    p = FocusPredictor(pixel_model(tmp_path / "m.onnx", a=2.0))
    assert not p.has_sigma
    offset, sigma = p.predict_with_sigma(frames[0])
    assert sigma is None and offset == p.predict(frames[0])
    assert p.predict_batch_with_sigma(frames)[1] is None


def test_sigma_metadata_must_match_the_outputs(tmp_path):
    with pytest.raises(ModelError, match="expected 1 input and 1 output"):
        FocusPredictor(sigma_model(tmp_path / "unnamed.onnx", sigma_output=None))  # two outputs, metadata silent
    with pytest.raises(ModelError, match="'offset_spread' is not an output"):
        FocusPredictor(sigma_model(tmp_path / "renamed.onnx", sigma_output="offset_spread"))
    with pytest.raises(ModelError, match="expected 1 input and 2 output"):
        FocusPredictor(pixel_model(tmp_path / "one.onnx", metadata=make_metadata(sigma_output="offset_sigma")))
    for bad in (3, "", "offset_steps"):
        with pytest.raises(ModelError, match="sigma_output"):
            FocusPredictor(sigma_model(tmp_path / "bad.onnx", metadata=make_metadata(sigma_output=bad)))


def test_a_negative_sigma_is_refused_like_a_nan_offset(tmp_path, frames):
    p = FocusPredictor(sigma_model(tmp_path / "neg.onnx", c=0.0, d=-1.0))
    with pytest.raises(NonFiniteOutputError, match="invalid sigma"):
        p.predict_with_sigma(frames[0])
