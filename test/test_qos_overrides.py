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

"""QoS overrides on the image topics, on a real rclpy graph.

The parameters ``qos_overrides.<topic>.<publisher|subscription>.<policy>`` (rclpy's QoSOverridingOptions)
change what the nodes offer and request.
"""
from __future__ import annotations

import pytest
from rclpy.parameter import Parameter
from rclpy.qos import HistoryPolicy, ReliabilityPolicy
from sensor_msgs.msg import Image

from celegans_autofocus.nodes.camera_node import CameraNode
from celegans_autofocus.nodes.common import SENSOR_QOS, ConfigError
from celegans_autofocus.nodes.focus_predictor_node import FocusPredictorNode
from celegans_autofocus.nodes.worm_detector_node import WormDetectorNode
from onnx_models import pixel_model
from test_camera_node import write_folder


def override(harness, topic: str, kind: str, policy: str) -> str:
    return f"qos_overrides.{harness.namespace}/{topic}.{kind}.{policy}"


def test_camera_image_publisher_takes_reliability_and_depth_from_parameters(tmp_path, ros_harness):
    write_folder(tmp_path, n=2)
    reliability = override(ros_harness, "camera/image_raw", "publisher", "reliability")
    depth = override(ros_harness, "camera/image_raw", "publisher", "depth")
    node = ros_harness.start(CameraNode, backend="folder", path=str(tmp_path), fps=50.0,
                             **{reliability: "best_effort", depth: 7})
    assert node.image_pub.qos_profile.reliability == ReliabilityPolicy.BEST_EFFORT
    assert node.image_pub.qos_profile.depth == 7
    assert node.info_pub.qos_profile.reliability == ReliabilityPolicy.RELIABLE  # only the topic named
    assert node.get_parameter(reliability).value == "best_effort"
    assert not node.set_parameters([Parameter(reliability, value="reliable")])[0].successful  # read-only

    reliable = ros_harness.probe.collect("camera/image_raw", Image)  # a reliable subscriber cannot match
    best_effort: list = []
    ros_harness.probe.create_subscription(Image, "camera/image_raw", best_effort.append, SENSOR_QOS)
    assert ros_harness.spin_until(lambda: len(best_effort) >= 3, timeout_s=15)
    assert not reliable and node.image_pub.get_subscription_count() == 1


def test_without_overrides_the_defaults_stay_and_the_parameters_say_them(tmp_path, ros_harness):
    write_folder(tmp_path, n=2)
    node = ros_harness.start(CameraNode, backend="folder", path=str(tmp_path))
    assert node.image_pub.qos_profile.reliability == ReliabilityPolicy.RELIABLE
    assert node.get_parameter(override(ros_harness, "camera/image_raw", "publisher", "depth")).value == 2
    assert node.get_parameter(override(ros_harness, "camera/image_raw", "publisher", "history")).value == "keep_last"


def test_predictor_and_detector_image_subscriptions_take_overrides(ros_harness, tmp_path):
    model = pixel_model(tmp_path / "m.onnx")
    predictor_node = ros_harness.start(FocusPredictorNode, model_path=str(model), input="full", **{
        override(ros_harness, "camera/image_raw", "subscription", "reliability"): "reliable",
        override(ros_harness, "camera/image_raw", "subscription", "depth"): 4})
    ros_harness.start(WormDetectorNode, **{
        override(ros_harness, "camera/image_raw", "subscription", "reliability"): "reliable"})
    seen = {}

    def subscriptions():
        seen.update({i.node_name: i.qos_profile for i in
                     ros_harness.probe.get_subscriptions_info_by_topic(f"{ros_harness.namespace}/camera/image_raw")})
        return len(seen) == 2

    # reliability as the graph (DDS discovery) reports it; the default is best effort (sensor data)
    assert ros_harness.spin_until(subscriptions, timeout_s=15), seen
    assert seen["focus_predictor_node"].reliability == ReliabilityPolicy.RELIABLE
    assert seen["worm_detector_node"].reliability == ReliabilityPolicy.RELIABLE
    assert predictor_node._image_sub.qos_profile.depth == 4  # discovery does not carry the depth
    assert predictor_node._image_sub.qos_profile.history == HistoryPolicy.KEEP_LAST


@pytest.mark.parametrize("policy, value", [("reliability", "sometimes"), ("depth", -1)])
def test_a_bad_override_is_a_configuration_error_naming_the_topic(tmp_path, ros_harness, policy, value):
    write_folder(tmp_path, n=1)
    with pytest.raises(ConfigError, match="QoS override for camera/image_raw"):
        ros_harness.start(CameraNode, backend="folder", path=str(tmp_path),
                          **{override(ros_harness, "camera/image_raw", "publisher", policy): value})
