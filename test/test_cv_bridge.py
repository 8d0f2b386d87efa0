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

"""Image <-> numpy conversions of nodes/common.py against cv_bridge, where it can be imported (a ROS install).

They agree with cv_bridge's Python API (vision_opencv) for every encoding the package supports
(core.images.ENCODINGS).
"""
from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from celegans_autofocus.core.images import ENCODINGS
from celegans_autofocus.nodes.common import array_to_image, image_to_array, image_to_gray

pytestmark = pytest.mark.skipif(importlib.util.find_spec("cv_bridge") is None,
                                reason="cv_bridge is not installed (it comes with a ROS install)")

COLOUR = [e for e, (channels, _, _) in ENCODINGS.items() if channels > 1]


def sample(encoding: str, height: int = 5, width: int = 7) -> np.ndarray:
    """Random pixels over the encoding's whole range."""
    channels, dtype, _ = ENCODINGS[encoding]
    shape = (height, width) if channels == 1 else (height, width, channels)
    return np.random.default_rng(len(encoding)).integers(0, np.iinfo(dtype).max, shape, dtype=dtype,
                                                         endpoint=True)


@pytest.fixture(scope="module")
def bridge():
    from cv_bridge import CvBridge
    return CvBridge()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_our_message_is_cv_bridges_message(bridge, encoding):
    image = sample(encoding)
    ours, theirs = array_to_image(image, encoding), bridge.cv2_to_imgmsg(image, encoding)
    assert (ours.height, ours.width, ours.encoding, ours.step, bool(ours.is_bigendian)) == \
        (theirs.height, theirs.width, theirs.encoding, theirs.step, bool(theirs.is_bigendian))
    assert bytes(ours.data) == bytes(theirs.data)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_both_read_each_others_messages_back(bridge, encoding):
    image = sample(encoding)
    back = bridge.imgmsg_to_cv2(array_to_image(image, encoding), desired_encoding="passthrough")
    assert back.dtype == image.dtype and np.array_equal(back, image)
    ours = image_to_array(bridge.cv2_to_imgmsg(image, encoding))
    assert ours.dtype == image.dtype and np.array_equal(ours, image)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_padded_rows_read_alike(bridge, encoding):
    """A driver may pad each row (step > width * pixel bytes); both skip the padding."""
    image = sample(encoding)
    msg = array_to_image(image, encoding)
    pixel_bytes = msg.step // msg.width
    padded = np.full((msg.height, msg.step + 3 * pixel_bytes), 0xAB, np.uint8)
    padded[:, :msg.step] = np.frombuffer(bytes(msg.data), np.uint8).reshape(msg.height, msg.step)
    msg.step = padded.shape[1]
    msg.data = padded.tobytes()
    theirs = bridge.imgmsg_to_cv2(msg, desired_encoding="passthrough")
    assert np.array_equal(theirs, image) and np.array_equal(image_to_array(msg), image)


@pytest.mark.skipif(not hasattr(np.ndarray, "newbyteorder"),
                    reason="cv_bridge's big-endian path calls ndarray.newbyteorder, removed in NumPy 2")
def test_big_endian_mono16_reads_alike(bridge):
    image = sample("mono16")
    msg = array_to_image(image, "mono16")
    msg.is_bigendian = 1
    msg.data = image.astype(">u2").tobytes()
    assert np.array_equal(bridge.imgmsg_to_cv2(msg), image) and np.array_equal(image_to_array(msg), image)


@pytest.mark.parametrize("encoding", COLOUR)
def test_grayscale_is_cv_bridges_mono8_before_rounding(bridge, encoding):
    """Differ by at most one grey level from cv_bridge's mono8.

    image_to_gray is BT.601 luma in float32; cv_bridge's mono8 is OpenCV's fixed-point cvtColor of the
    same rule, rounded to uint8.
    """
    msg = array_to_image(sample(encoding, 32, 48), encoding)
    theirs = bridge.imgmsg_to_cv2(msg, desired_encoding="mono8")
    ours = image_to_gray(msg)
    assert theirs.shape == ours.shape and theirs.dtype == np.uint8
    assert np.abs(ours - theirs.astype(np.float32)).max() <= 1.0


@pytest.mark.parametrize("encoding", ["mono8", "mono16"])
def test_mono_passes_through_as_in_cv_bridge(bridge, encoding):
    msg = array_to_image(sample(encoding), encoding)
    theirs = bridge.imgmsg_to_cv2(msg, desired_encoding=encoding)
    ours = image_to_gray(msg)
    assert ours.dtype == theirs.dtype and np.array_equal(ours, theirs)
