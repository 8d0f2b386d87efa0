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

"""FocusPredictor on tiny real ONNX models (onnx_models.py): values, batching, metadata and every bad model."""
from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from celegans_autofocus.core import predictor as predictor_module
from celegans_autofocus.core.images import ImageError, PreprocessSpec, preprocess
from celegans_autofocus.core.predictor import FocusPredictor, ModelError, NonFiniteOutputError, default_model_path
from onnx_models import (constant_model, gradient_energy_model, make_metadata, mean_abs_model, nan_model,
                         no_metadata_model, pixel_model, wrong_input_model, write_corrupt_model)

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def frame():
    rng = np.random.default_rng(1)
    return rng.integers(0, 256, (97, 130), dtype=np.uint8)


def test_pixel_model_matches_the_one_preprocessing(tmp_path, frame):
    p = FocusPredictor(pixel_model(tmp_path / "m.onnx", a=10.0, b=-3.0, row=2, col=5, output_scale=2.5))
    x = preprocess(frame, PreprocessSpec(input_px=32))
    assert p.predict(frame) == pytest.approx(2.5 * (10.0 * x[2, 5] - 3.0), rel=1e-5)
    assert p.spec == PreprocessSpec(input_px=32) and p.metadata["arch"] == "test-onnx-helper"
    assert p.providers == ["CPUExecutionProvider"] and p.name == "m.onnx" and p.step_um == 5.0


def test_mean_abs_and_gradient_models(tmp_path, frame):
    x = preprocess(frame, PreprocessSpec(input_px=32))
    assert FocusPredictor(mean_abs_model(tmp_path / "a.onnx", 2.0, 1.0)).predict(frame) == \
        pytest.approx(2.0 * np.abs(x).mean() + 1.0, rel=1e-5)
    g = FocusPredictor(gradient_energy_model(tmp_path / "g.onnx"))
    assert g.predict(frame) == pytest.approx(float((np.diff(x, axis=1) ** 2).mean()), rel=1e-5)
    smooth = np.tile(np.linspace(0, 255, 130), (97, 1)).astype(np.uint8)
    assert g.predict(smooth) < g.predict(frame)  # a sharper frame scores higher


@pytest.mark.parametrize("dynamic", [True, False])
def test_batch_equals_single(tmp_path, frame, dynamic):
    p = FocusPredictor(pixel_model(tmp_path / "m.onnx", a=3.0, b=1.0, row=7, col=9, dynamic_batch=dynamic))
    frames = [frame, frame[::-1], frame[:, ::-1].astype(np.uint16) * 200]
    batch = p.predict_batch(frames)
    assert batch.shape == (3,)
    np.testing.assert_allclose(batch, [p.predict(f) for f in frames], rtol=1e-6)
    assert len(set(np.round(batch, 4))) == 3
    assert p.predict_batch([]).shape == (0,)


@pytest.mark.parametrize("dynamic", [True, False])
def test_a_contrast_model_reads_frames_through_its_own_normalisation(tmp_path, frame, dynamic):
    """The metadata's normalize decides the input; predict_inputs takes inputs already preprocessed by it."""
    spec = PreprocessSpec(input_px=32, normalize="contrast")
    meta = make_metadata(preprocess=spec.to_dict())
    p = FocusPredictor(pixel_model(tmp_path / "m.onnx", a=10.0, row=2, col=5, dynamic_batch=dynamic, metadata=meta))
    x = preprocess(frame, spec)
    assert p.spec == spec and p.predict(frame) == pytest.approx(10.0 * x[2, 5], rel=1e-5)
    assert x[2, 5] != pytest.approx(preprocess(frame, PreprocessSpec(input_px=32))[2, 5], abs=1e-3)
    frames = [frame, frame[::-1]]
    inputs = np.stack([preprocess(f, spec) for f in frames])
    np.testing.assert_allclose(p.predict_inputs(inputs)[0], p.predict_batch(frames), rtol=1e-6)
    with pytest.raises(ImageError, match=r"model inputs must be \(N, 32, 32\)"):
        p.predict_inputs(inputs[:, :16])


def test_full_frame_and_bad_frames(tmp_path):
    p = FocusPredictor(constant_model(tmp_path / "c.onnx", 42.0))
    full = np.random.default_rng(0).integers(0, 256, (1944, 2592), dtype=np.uint8)
    assert p.predict(full) == pytest.approx(42.0)
    with pytest.raises(ImageError):
        p.predict(np.zeros((0, 10), np.uint8))
    with pytest.raises(ImageError):
        p.predict(np.zeros((10, 10, 3), np.uint8))  # colour: convert with images.to_gray first
    with pytest.raises(ImageError):
        p.predict(np.full((10, 10), np.nan, np.float32))


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_non_finite_output_is_an_error_naming_the_model(tmp_path, frame, value):
    path = constant_model(tmp_path / "bad.onnx", value)
    p = FocusPredictor(path)
    with pytest.raises(NonFiniteOutputError, match=str(path)):
        p.predict(frame)
    with pytest.raises(NonFiniteOutputError):
        p.predict_batch([frame, frame])
    with pytest.raises(NonFiniteOutputError):
        FocusPredictor(nan_model(tmp_path / "nan.onnx")).predict(frame)


def test_warm_up_runs_the_session_once_and_tolerates_a_garbage_model(tmp_path, frame):
    p = FocusPredictor(constant_model(tmp_path / "c.onnx", 12.5, input_px=32))
    assert 0 < p.warm_up() < 10_000
    assert p.predict(frame) == pytest.approx(12.5)
    bad = FocusPredictor(nan_model(tmp_path / "nan.onnx"))
    assert bad.warm_up() > 0                  # the node still starts; its frames are rejected one by one
    with pytest.raises(NonFiniteOutputError):
        bad.predict(frame)


def test_missing_and_corrupt_files_name_the_path(tmp_path):
    missing = tmp_path / "nope" / "model.onnx"
    with pytest.raises(ModelError, match=f"{missing}: model file not found"):
        FocusPredictor(missing)
    junk = write_corrupt_model(tmp_path / "junk.onnx")
    with pytest.raises(ModelError, match=f"{junk}: cannot load ONNX model"):
        FocusPredictor(junk)
    truncated = write_corrupt_model(tmp_path / "cut.onnx", pixel_model(tmp_path / "ok.onnx"))
    with pytest.raises(ModelError, match=f"{truncated}: cannot load"):
        FocusPredictor(truncated)
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ModelError, match=str(empty)):
        FocusPredictor(empty)
    with pytest.raises(ModelError, match="model file not found"):
        FocusPredictor(tmp_path)  # a directory is not a model file


def test_model_without_metadata(tmp_path):
    path = no_metadata_model(tmp_path / "plain.onnx")
    with pytest.raises(ModelError, match=f"{path}: no 'celegans_autofocus' entry"):
        FocusPredictor(path)


@pytest.mark.parametrize("metadata, message", [
    ("{not json", "not valid JSON"),
    ("[1, 2]", "must be a JSON object"),
    (make_metadata(schema=2), "schema 2 is not supported"),
    (make_metadata(output="focus_score"), "output 'focus_score'"),
    (make_metadata(output_scale=None), "output_scale=None must be a finite number"),
    (make_metadata(output_scale=math.nan), "output_scale=nan"),
    (make_metadata(output_scale=0.0), "output_scale != 0"),
    (make_metadata(step_um=-5.0), "step_um must be > 0"),
    (make_metadata(step_um="5"), "step_um='5'"),
    (make_metadata(preprocess={"input_px": 32, "colour": "yes"}), "preprocess .* is invalid"),
    (make_metadata(preprocess={"input_px": 32, "normalize": "minmax"}), "preprocess .* is invalid"),
    (make_metadata(preprocess=None), "preprocess None is invalid"),
])
def test_invalid_metadata_is_rejected_naming_the_path(tmp_path, metadata, message):
    text = metadata if isinstance(metadata, str) else json.dumps(metadata)
    path = pixel_model(tmp_path / "m.onnx", metadata=text)
    with pytest.raises(ModelError, match=f"{path}: .*{message}"):
        FocusPredictor(path)


def test_input_shape_must_match_metadata(tmp_path):
    path = wrong_input_model(tmp_path / "w.onnx", model_px=16, metadata_px=32)
    with pytest.raises(ModelError, match=rf"{path}: input 'image' .*\[.N., 1, 16, 16\].*input_px=32"):
        FocusPredictor(path)


def test_provider_and_thread_arguments(tmp_path, frame):
    path = pixel_model(tmp_path / "m.onnx")
    assert FocusPredictor(path, providers=None).providers == ["CPUExecutionProvider"]
    assert FocusPredictor(path, providers=["CPUExecutionProvider"], intra_op_threads=1).predict(frame) == \
        pytest.approx(FocusPredictor(path).predict(frame))
    with pytest.raises(ValueError, match="NoSuchExecutionProvider"):
        FocusPredictor(path, providers="NoSuchExecutionProvider")
    with pytest.raises(ValueError, match="intra_op_threads"):
        FocusPredictor(path, intra_op_threads=-1)


def _install_fake_prefix(root: Path, with_ament_marker: bool, model_source: Path) -> Path:
    share = root / "share" / "celegans_autofocus" / "models"
    share.mkdir(parents=True)
    (share / "default.onnx").write_bytes(model_source.read_bytes())
    if with_ament_marker:
        index = root / "share" / "ament_index" / "resource_index" / "packages"
        index.mkdir(parents=True)
        (index / "celegans_autofocus").write_text("")
    return share / "default.onnx"


def test_default_model_path_search_order(tmp_path, monkeypatch):
    model = pixel_model(tmp_path / "m.onnx")
    ament = _install_fake_prefix(tmp_path / "ament", True, model)
    prefix = _install_fake_prefix(tmp_path / "venv", False, model)
    monkeypatch.setattr(sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setenv("AMENT_PREFIX_PATH", str(tmp_path / "ament"))
    assert default_model_path() == ament
    monkeypatch.delenv("AMENT_PREFIX_PATH")
    assert default_model_path() == prefix
    prefix.unlink()
    source_tree = REPO / "models" / "default.onnx"
    if source_tree.is_file():
        assert default_model_path() == source_tree
    else:
        with pytest.raises(ModelError, match=f"no bundled model found; looked in: {prefix}, {source_tree}"):
            default_model_path()


def test_bundled_default_model_if_present():
    path = REPO / "models" / "default.onnx"
    if not path.is_file():
        pytest.skip(f"{path} is not there yet (trained by the training issue)")
    p = FocusPredictor(path)
    assert p.metadata["output"] == "offset_steps" and p.spec.input_px >= 8
    frame = np.random.default_rng(0).integers(0, 256, (1944, 2592), dtype=np.uint8)
    assert math.isfinite(p.predict(frame))
    assert predictor_module.METADATA_KEY == "celegans_autofocus"
