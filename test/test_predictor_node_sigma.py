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

"""focus_predictor_node publishes the model's uncertainty on focus/offset_sigma (real rclpy, tiny real ONNX models)."""
from __future__ import annotations

import math
import time

import numpy as np
import pytest
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import Image

from celegans_autofocus.core.predictor import FocusPredictor
from celegans_autofocus.nodes.common import SENSOR_QOS, array_to_image, s_to_stamp
from celegans_autofocus.nodes.focus_predictor_node import FocusPredictorNode
from onnx_models import pixel_model, sigma_model


def stamped(seed: int, frame_id: str) -> Image:
    image = np.random.default_rng(seed).integers(0, 256, (60, 80), dtype=np.uint8)
    msg = array_to_image(image, frame_id=frame_id)
    msg.header.stamp = s_to_stamp(time.time())
    return msg, image


def run(harness, model, msgs: list[Image], n_answers: int) -> tuple[list, list]:
    harness.start(FocusPredictorNode, model_path=str(model), intra_op_threads=1)
    offsets = harness.probe.collect("focus/offset", PointStamped)
    sigmas = harness.probe.collect("focus/offset_sigma", PointStamped)
    pub = harness.probe.publisher("camera/image_raw", Image, SENSOR_QOS)
    assert harness.wait_for_subscribers(pub)
    for msg in msgs:
        pub.publish(msg)
        harness.spin_for(0.2)
    assert harness.spin_until(lambda: len(offsets) >= n_answers, timeout_s=15), f"got {len(offsets)} offsets"
    harness.spin_for(0.3)  # a sigma would follow its offset at once
    return offsets, sigmas


def test_sigma_follows_each_offset_with_its_header(ros_harness, tmp_path):
    model = sigma_model(tmp_path / "nll.onnx", a=20.0, b=-3.0, c=4.0, d=2.0, output_scale=2.0)
    frames = [stamped(i, f"cam{i}") for i in range(3)]
    bad = Image(encoding="bgr8", width=4, height=4, step=12, data=bytes(10))  # inconsistent size: rejected
    bad.header.frame_id = "broken"
    offsets, sigmas = run(ros_harness, model, [m for m, _ in frames] + [bad], 4)
    assert len(sigmas) == 4
    reference = FocusPredictor(model)
    for (msg, image), offset, sigma in zip(frames, offsets, sigmas):
        want_offset, want_sigma = reference.predict_with_sigma(image)
        assert sigma.header == msg.header == offset.header
        assert offset.point.z == pytest.approx(want_offset, abs=1e-4)
        assert sigma.point.z == pytest.approx(want_sigma, abs=1e-4) and sigma.point.z >= 4.0
    assert len({round(s.point.z, 3) for s in sigmas[:3]}) == 3
    assert sigmas[3].header.frame_id == "broken" and math.isnan(sigmas[3].point.z) and math.isnan(offsets[3].point.z)


def test_a_model_without_sigma_publishes_none(ros_harness, tmp_path):
    offsets, sigmas = run(ros_harness, pixel_model(tmp_path / "m.onnx"), [stamped(0, "cam")[0]], 1)
    assert len(offsets) == 1 and sigmas == []
