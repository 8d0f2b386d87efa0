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

"""worm_detector_node through its topics on real rclpy: crop, target, debug image, bad frames."""
from __future__ import annotations

import array

import cv2
import numpy as np
import pytest
from geometry_msgs.msg import PointStamped
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image

from celegans_autofocus.nodes.common import ConfigError, array_to_image, image_to_array, s_to_stamp
from celegans_autofocus.nodes.worm_detector_node import WormDetectorNode

SHAPE = (486, 648)  # a quarter-scale full field: full_width_px 2592 -> scale 0.25


def worm_frame(center=(300.0, 250.0), shape=SHAPE, seed=0, dtype=np.uint8) -> np.ndarray:
    """Draw a dark, 12 px wide, ~170 px long curved worm on a noisy bright background."""
    rng = np.random.default_rng(seed)
    img = np.full(shape, 170, np.float32) + rng.normal(0, 4, shape)
    t = np.linspace(-1, 1, 40)
    pts = np.stack([center[0] + 80 * t, center[1] + 25 * np.sin(2.5 * t)], 1).round().astype(np.int32)
    mask = np.zeros(shape, np.uint8)
    cv2.polylines(mask, [pts], False, 255, 12)
    img[mask > 0] -= 60
    img = np.clip(img, 0, 255)
    return (img * 257).astype(np.uint16) if dtype == np.uint16 else img.astype(np.uint8)


class Rig:
    """The detector node plus probe publishers/subscribers in one test namespace."""

    def __init__(self, harness, **params):
        self.h = harness
        self.node = harness.start(WormDetectorNode, **params)
        probe = harness.probe
        self.image_pub = probe.publisher("camera/image_raw", Image)
        self.offset_pub = probe.publisher("focus/offset", PointStamped)
        self.crops = probe.collect("worm/crop", Image)
        self.targets = probe.collect("worm/target", PointStamped)
        self.debug = probe.collect("worm/debug_image", Image)
        assert harness.wait_for_subscribers(self.image_pub) and harness.wait_for_subscribers(self.offset_pub)

    def send(self, msg: Image, expect_output: bool = True) -> None:
        n = len(self.targets)
        self.image_pub.publish(msg)
        if expect_output:
            assert self.h.spin_until(lambda: len(self.targets) > n and len(self.crops) > n, timeout_s=15)

    def frame(self, image: np.ndarray, t_s: float = 100.0, encoding: str | None = None) -> Image:
        msg = array_to_image(image, encoding, frame_id="cam")
        msg.header.stamp = s_to_stamp(t_s)
        return msg


def test_crop_target_and_debug_follow_the_worm_with_source_headers(ros_harness):
    rig = Rig(ros_harness, fov_px=500)
    rig.send(rig.frame(worm_frame((300, 250)), t_s=100.0))
    crop, target = rig.crops[-1], rig.targets[-1]
    assert (crop.width, crop.height, crop.encoding) == (125, 125, "mono8")  # 500 full px at scale 0.25
    assert crop.header.stamp == s_to_stamp(100.0) and crop.header.frame_id == "cam"
    assert target.header == crop.header
    assert abs(target.point.x - 300) < 6 and abs(target.point.y - 250) < 6 and target.point.z == 0
    # the crop really is the frame around the worm: its dark pixels are in the middle
    pixels = image_to_array(crop)
    assert pixels[50:75, 50:75].mean() < pixels.mean() - 5
    assert ros_harness.spin_until(lambda: rig.debug, timeout_s=15)
    debug = rig.debug[-1]
    # 648 px frame, whole factor 1
    assert (debug.width, debug.encoding, debug.header.stamp) == (648, "bgr8", s_to_stamp(100.0))

    rig.send(rig.frame(worm_frame((330, 262), seed=1), t_s=100.1))  # crawled 130 full px (< max_jump_px)
    assert abs(rig.targets[-1].point.x - 330) < 6 and abs(rig.targets[-1].point.y - 262) < 6


def test_lost_worm_keeps_last_position_and_counts_frames(ros_harness):
    rig = Rig(ros_harness, fov_px=750)
    rig.send(rig.frame(worm_frame((200, 300))))
    empty = np.clip(np.random.default_rng(3).normal(170, 4, SHAPE), 0, 255).astype(np.uint8)
    rig.send(rig.frame(empty, t_s=100.1))
    rig.send(rig.frame(empty, t_s=100.2))
    last = rig.targets[-1]
    assert last.point.z == 2 and abs(last.point.x - 200) < 6 and abs(last.point.y - 300) < 6


def test_a_switch_to_another_worm_is_announced_once_with_its_position(ros_harness):
    rig = Rig(ros_harness, fov_px=500, reacquire_after_frames=2)
    switches = ros_harness.probe.collect("worm/target_switch", PointStamped)
    rig.send(rig.frame(worm_frame((150, 150)), t_s=100.0))
    rig.send(rig.frame(worm_frame((480, 360), seed=1), t_s=100.1))  # too far to be the same worm: lost 1
    assert rig.targets[-1].point.z == 1
    rig.send(rig.frame(worm_frame((480, 360), seed=2), t_s=100.2))  # lost 2: the tracker takes the other worm
    assert ros_harness.spin_until(lambda: switches, timeout_s=5)
    rig.send(rig.frame(worm_frame((482, 361), seed=3), t_s=100.3))
    ros_harness.spin_for(0.2)
    assert len(switches) == 1 and switches[0].header.stamp == s_to_stamp(100.2)
    assert abs(switches[0].point.x - 480) < 6 and abs(switches[0].point.y - 360) < 6 and switches[0].point.z == 1
    assert rig.targets[-1].point.z == 0


def test_full_frame_fov_and_run_time_fov_change(ros_harness):
    rig = Rig(ros_harness, fov_px=0)
    rig.send(rig.frame(worm_frame()))
    assert (rig.crops[-1].width, rig.crops[-1].height) == (648, 486)
    assert rig.node.set_parameters([Parameter("fov_px", value=1000)])[0].successful
    rig.send(rig.frame(worm_frame(), t_s=101.0))
    assert (rig.crops[-1].width, rig.crops[-1].height) == (250, 250)
    assert not rig.node.set_parameters([Parameter("fov_px", value=8)])[0].successful
    result = rig.node.set_parameters([Parameter("background_px", value=10)])[0]  # < 3 x downsample
    assert not result.successful and "background_px" in result.reason
    rig.send(rig.frame(worm_frame(), t_s=102.0))  # still running, with the settings it had
    assert rig.node.params.background_px == 248


@pytest.mark.parametrize("encoding, dtype", [("mono16", np.uint16), ("bgr8", np.uint8), ("rgba8", np.uint8)])
def test_other_encodings_give_crops_in_the_same_encoding(encoding, dtype, ros_harness):
    rig = Rig(ros_harness, fov_px=500)
    gray = worm_frame((300, 250), dtype=dtype)
    image = gray if encoding == "mono16" else np.dstack([gray] * (3 if encoding == "bgr8" else 4))
    rig.send(rig.frame(image, encoding=encoding))
    crop = rig.crops[-1]
    assert crop.encoding == encoding and (crop.width, crop.height) == (125, 125)
    assert abs(rig.targets[-1].point.x - 300) < 6


def test_debug_text_uses_the_latest_focus_offset(ros_harness):
    rig = Rig(ros_harness, fov_px=500, offset_max_age_s=1.0)
    offset = PointStamped()
    offset.header.stamp = s_to_stamp(100.0)
    offset.point.z = -42.0
    rig.offset_pub.publish(offset)
    assert ros_harness.spin_until(lambda: rig.node.last_offset is not None, timeout_s=15)
    assert rig.node._offset_text(rig.frame(worm_frame(), t_s=100.5)) == "focus offset -42.0 steps"
    assert rig.node._offset_text(rig.frame(worm_frame(), t_s=103.0)).endswith("(stale)")


def _bad_frames() -> dict[str, Image]:
    good = array_to_image(worm_frame(), frame_id="cam")
    wrong_encoding = array_to_image(worm_frame(), frame_id="cam")
    wrong_encoding.encoding = "yuv422"
    empty = Image(encoding="mono8")
    truncated = array_to_image(worm_frame(), frame_id="cam")
    truncated.data = array.array("B", bytes(truncated.data)[: len(truncated.data) // 2])
    tiny = array_to_image(np.full((8, 8), 100, np.uint8))
    wrong_size = array_to_image(worm_frame(shape=(240, 320)))
    return {"good": good, "wrong encoding": wrong_encoding, "empty": empty, "truncated": truncated,
            "tiny": tiny, "wrong size": wrong_size}


def test_bad_frames_are_dropped_and_the_node_keeps_working(ros_harness):
    rig = Rig(ros_harness, fov_px=500, expected_width_px=648, expected_height_px=486)
    rig.node.get_logger().set_level(40)  # the expected warnings stay out of the test log
    frames = _bad_frames()
    for name in ("wrong encoding", "empty", "truncated", "tiny", "wrong size"):
        dropped = rig.node.frames_dropped
        rig.send(frames[name], expect_output=False)
        assert ros_harness.spin_until(lambda: rig.node.frames_dropped > dropped, timeout_s=15), name
    assert rig.crops == [] and rig.targets == [] and rig.node.frames_processed == 0
    rig.send(frames["good"])
    assert rig.node.frames_processed == 1 and rig.crops[-1].width == 125


@pytest.mark.parametrize("params, words", [({"fov_px": 5}, "fov_px"), ({"select": "random"}, "select"),
                                           ({"downsample": 0}, "downsample")])
def test_invalid_configuration_is_refused(params, words, ros_harness):
    with pytest.raises(ConfigError, match=words):
        ros_harness.start(WormDetectorNode, **params)
