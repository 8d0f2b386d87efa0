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

"""Encodings, grayscale rule and the one preprocessing function."""
from dataclasses import replace

import numpy as np
import pytest

from celegans_autofocus.core.images import (
    CONTRAST_GAIN, ENCODINGS, NORMALIZE, ImageError, PreprocessSpec, array_to_gray, check_view, decode, encode,
    preprocess, to_gray,
)


@pytest.mark.parametrize("shape, problem", [((1, 100), "too small"), ((2, 2), "too small"), ((11, 30), "too small"),
                                            ((47, 500), "too thin"), ((500, 124), "too thin"), ((0, 5), "empty"),
                                            ((12, 12), None), ((500, 125), None), ((1944, 2592), None)])
def test_a_view_the_model_reads_is_at_least_an_eighth_of_its_input_and_at_most_4_to_1(shape, problem):
    gray = np.zeros(shape, np.uint8)
    if problem is None:
        check_view(gray, 96)
    else:
        with pytest.raises(ImageError, match=problem):
            check_view(gray, 96)


@pytest.mark.parametrize("encoding", sorted(ENCODINGS))
def test_encode_decode_round_trip(encoding):
    channels, dtype, _ = ENCODINGS[encoding]
    rng = np.random.default_rng(0)
    shape = (5, 7) if channels == 1 else (5, 7, channels)
    image = rng.integers(0, np.iinfo(dtype).max, size=shape, dtype=dtype)
    data, step = encode(image, encoding)
    assert step == 7 * channels * np.dtype(dtype).itemsize
    np.testing.assert_array_equal(decode(data, encoding, 5, 7, step), image)


def test_decode_honours_row_padding_and_big_endian():
    image = np.arange(12, dtype=np.uint16).reshape(3, 4)
    rows = [image[r].astype(">u2").tobytes() + b"\xff\xff" for r in range(3)]  # 2 padding bytes per row
    out = decode(b"".join(rows), "mono16", 3, 4, step=10, is_bigendian=True)
    np.testing.assert_array_equal(out, image)


def test_unknown_encoding_is_named():
    with pytest.raises(ImageError, match="yuv422"):
        decode(b"\0" * 8, "yuv422", 2, 2, 4)


@pytest.mark.parametrize("height,width", [(0, 4), (4, 0)])
def test_empty_image_rejected(height, width):
    with pytest.raises(ImageError, match="empty"):
        decode(b"", "mono8", height, width, max(width, 1))


def test_short_buffer_rejected():
    with pytest.raises(ImageError, match="expected"):
        decode(b"\0" * 10, "mono8", 4, 4, 4)


def test_bt601_gray_rule_is_channel_order_aware():
    pixel = np.array([[[200, 100, 50]]], dtype=np.uint8)  # R, G, B
    expected = 0.299 * 200 + 0.587 * 100 + 0.114 * 50
    assert to_gray(pixel, "rgb8")[0, 0] == pytest.approx(expected, abs=1e-3)
    assert to_gray(pixel[:, :, ::-1].copy(), "bgr8")[0, 0] == pytest.approx(expected, abs=1e-3)
    rgba = np.concatenate([pixel, np.full((1, 1, 1), 7, np.uint8)], axis=2)
    assert to_gray(rgba, "rgba8")[0, 0] == pytest.approx(expected, abs=1e-3)
    assert array_to_gray(pixel[:, :, ::-1].copy())[0, 0] == pytest.approx(expected, abs=1e-3)


def test_preprocess_shape_and_zscore():
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 255, size=(1944, 2592), dtype=np.uint8)
    out = preprocess(frame, PreprocessSpec(input_px=64))
    assert out.shape == (64, 64) and out.dtype == np.float32
    assert abs(float(out.mean())) < 1e-4 and float(out.std()) == pytest.approx(1.0, abs=1e-3)


def test_preprocess_is_invariant_to_bit_depth_and_gain():
    rng = np.random.default_rng(2)
    frame8 = rng.integers(10, 200, size=(120, 160), dtype=np.uint8)
    frame16 = frame8.astype(np.uint16) * 257
    spec = PreprocessSpec(input_px=32)
    # Integer frames are resized before conversion, so 8-bit output carries <= 0.5 LSB rounding.
    np.testing.assert_allclose(preprocess(frame8, spec), preprocess(frame16, spec), atol=0.05)
    np.testing.assert_allclose(preprocess(frame16, spec), preprocess(frame16.astype(np.float32), spec), atol=1e-3)


@pytest.mark.parametrize("normalize", NORMALIZE)
def test_every_normalisation_is_invariant_to_gain(normalize):
    frame8 = np.random.default_rng(3).integers(10, 200, size=(120, 160), dtype=np.uint8)
    spec = PreprocessSpec(input_px=32, normalize=normalize)
    frame = frame8.astype(np.float32)  # (a uint8 frame is resized before it is a float: +-0.5 LSB, tested above)
    np.testing.assert_allclose(preprocess(frame, spec), preprocess(frame * 3.0, spec), atol=1e-4)


def test_contrast_keeps_how_dark_a_worm_is_where_zscore_does_not():
    light = np.full((64, 64), 200.0, np.float32)
    pale, dark = light.copy(), light.copy()
    pale[24:40, 24:40], dark[24:40, 24:40] = 150.0, 50.0  # the same worm, blocking a quarter / three quarters
    zscore, contrast = PreprocessSpec(input_px=64), PreprocessSpec(input_px=64, normalize="contrast")
    np.testing.assert_allclose(preprocess(pale, zscore), preprocess(dark, zscore), atol=1e-4)  # alike once z-scored
    worm = (slice(24, 40), slice(24, 40))
    assert preprocess(dark, contrast)[worm].mean() < 2.5 * preprocess(pale, contrast)[worm].mean() < 0
    # contrast = (I - mean) / mean * CONTRAST_GAIN: the pale worm's pixel by hand
    mean = (200.0 * (64 * 64 - 256) + 150.0 * 256) / (64 * 64)
    assert preprocess(pale, contrast)[30, 30] == pytest.approx((150.0 - mean) / mean * CONTRAST_GAIN, rel=1e-4)


def test_preprocess_area_resize_averages_blocks():
    frame = np.zeros((4, 4), np.float32)
    frame[:2, :2] = 4.0  # one 2x2 block bright -> one bright pixel of four after INTER_AREA
    out = preprocess(frame, PreprocessSpec(input_px=2))
    assert out[0, 0] > 0 and np.allclose(out.ravel()[1:], out[0, 1])


@pytest.mark.parametrize("bad", [np.zeros((0, 5)), np.full((4, 4), np.nan, np.float32), np.zeros((4, 4, 3))])
def test_preprocess_rejects_bad_images(bad):
    with pytest.raises(ImageError):
        preprocess(bad)


def test_spec_round_trip_and_validation():
    for spec in (PreprocessSpec(input_px=256), PreprocessSpec(input_px=256, normalize="contrast")):
        assert PreprocessSpec.from_dict(spec.to_dict()) == spec
    # the gain is metadata of contrast models only: z-scored metadata is what it was before contrast existed
    assert "contrast_gain" not in PreprocessSpec(input_px=256).to_dict()
    assert PreprocessSpec(input_px=256, normalize="contrast").to_dict()["contrast_gain"] == CONTRAST_GAIN
    halved = PreprocessSpec.from_dict({"input_px": 8, "normalize": "contrast", "contrast_gain": CONTRAST_GAIN / 2})
    frame = np.arange(64, dtype=np.float32).reshape(8, 8) + 10
    full = replace(halved, contrast_gain=CONTRAST_GAIN)
    np.testing.assert_allclose(preprocess(frame, halved), preprocess(frame, full) / 2, rtol=1e-5)
    with pytest.raises(ValueError, match="contrast_gain must be > 0"):
        PreprocessSpec.from_dict({"input_px": 256, "normalize": "contrast", "contrast_gain": 0})
    with pytest.raises(ValueError, match="normalize must be one of"):
        preprocess(frame, PreprocessSpec(input_px=8, normalize="minmax"))  # built without from_dict's check
    with pytest.raises(ValueError, match="unknown"):
        PreprocessSpec.from_dict({"input_px": 256, "colour": "x"})
    with pytest.raises(ValueError, match="unsupported"):
        PreprocessSpec.from_dict({"input_px": 256, "normalize": "minmax"})
