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

"""focus_predictor_node through its topics on real rclpy, with tiny real ONNX models."""
from __future__ import annotations

import array
import json
import math
import os
import subprocess
import sys
import threading
import time

import numpy as np
import onnx
import pytest
from diagnostic_msgs.msg import DiagnosticArray
from geometry_msgs.msg import PointStamped
from onnx import TensorProto, helper, numpy_helper
from sensor_msgs.msg import Image

from celegans_autofocus.core.predictor import FocusPredictor
from celegans_autofocus.nodes.common import SENSOR_QOS, array_to_image, s_to_stamp, stamp_to_s
from celegans_autofocus.nodes.focus_predictor_node import FocusPredictorNode, LatestFrame
from onnx_models import make_metadata, nan_model, pixel_model, write_corrupt_model


def frame(seed: int = 0, shape=(60, 80)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def stamped(image: np.ndarray, t_s: float | None = None, frame_id: str = "cam") -> Image:
    msg = array_to_image(image, frame_id=frame_id)
    msg.header.stamp = s_to_stamp(time.time() if t_s is None else t_s)
    return msg


def slow_model(path, input_px: int = 384, matmuls: int = 40):
    """Write a real model that takes tens of ms per frame: a chain of (input_px^3) matrix products."""
    nodes, prev = [], "image"
    for i in range(matmuls):
        nodes.append(helper.make_node("MatMul", [prev, "w"], [f"m{i}"]))
        prev = f"m{i}"
    nodes += [helper.make_node("ReduceMean", [prev, "axes"], ["r"], keepdims=1),
              helper.make_node("Flatten", ["r"], ["offset_steps"], axis=1)]
    w = (np.eye(input_px) * 0.999).astype(np.float32)
    graph = helper.make_graph(
        nodes, "slow", [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N", 1, input_px, input_px])],
        [helper.make_tensor_value_info("offset_steps", TensorProto.FLOAT, ["N", 1])],
        initializer=[numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([1, 2, 3]), "axes")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=10)
    helper.set_model_props(model, {"celegans_autofocus": json.dumps(make_metadata(input_px))})
    onnx.save(model, str(path))
    return path


def start(harness, model, **params):
    node = harness.start(FocusPredictorNode, model_path=str(model), intra_op_threads=1, **params)
    offsets = harness.probe.collect("focus/offset", PointStamped)
    return node, offsets


def publish(harness, topic: str, msgs: list[Image], gap_s: float = 0.0) -> None:
    pub = harness.probe.publisher(topic, Image, SENSOR_QOS)
    assert harness.wait_for_subscribers(pub), f"nobody subscribed to {topic}"
    for msg in msgs:
        pub.publish(msg)
        if gap_s:
            harness.spin_for(gap_s)


def test_offset_is_the_model_prediction_with_the_source_header(ros_harness, tmp_path):
    model = pixel_model(tmp_path / "m.onnx", a=25.0, b=-4.0, row=3, col=5)
    node, offsets = start(ros_harness, model)
    images = [frame(i) for i in range(3)]
    msgs = [stamped(img, t_s=time.time() - 0.01 * (3 - i), frame_id=f"cam{i}") for i, img in enumerate(images)]
    publish(ros_harness, "camera/image_raw", msgs, gap_s=0.2)
    assert ros_harness.spin_until(lambda: len(offsets) >= 3, timeout_s=15), f"got {len(offsets)} offsets"

    reference = FocusPredictor(model)
    for msg, img, out in zip(msgs, images, offsets):
        assert out.header.frame_id == msg.header.frame_id
        assert out.header.stamp == msg.header.stamp
        assert out.point.z == pytest.approx(reference.predict(img), abs=1e-4)
        assert (out.point.x, out.point.y) == (40.0, 30.0)
    assert len({round(o.point.z, 3) for o in offsets}) == 3, "three different frames gave the same offset"
    assert node.frames_processed == 3 and node.frames_rejected == 0


def test_crop_input_listens_to_worm_crop_only(ros_harness, tmp_path):
    model = pixel_model(tmp_path / "m.onnx", a=1.0, b=7.0)
    node, offsets = start(ros_harness, model, input="crop")
    publish(ros_harness, "worm/crop", [stamped(frame(1, (50, 50)))])
    assert ros_harness.spin_until(lambda: len(offsets) == 1, timeout_s=15)
    full_pub = ros_harness.probe.publisher("camera/image_raw", Image, SENSOR_QOS)
    assert full_pub.get_subscription_count() == 0
    assert node.get_subscriptions_info_by_topic(f"{ros_harness.namespace}/worm/crop")


@pytest.mark.parametrize("view,topic", [("crop", "worm/crop"), ("full", "camera/image_raw"),
                                        ("mixed", "camera/image_raw")])
def test_auto_input_follows_the_models_view(ros_harness, tmp_path, view, topic):
    """The default input=auto: a crop model (like the bundled one) listens to the detector's crop."""
    model = pixel_model(tmp_path / "m.onnx", a=1.0, b=7.0, metadata=make_metadata(32, input_view=view))
    node, offsets = start(ros_harness, model)
    assert node.params.input == "auto" and node.input_topic == topic
    publish(ros_harness, topic, [stamped(frame(1, (50, 50)))])
    assert ros_harness.spin_until(lambda: len(offsets) == 1, timeout_s=15)


@pytest.mark.parametrize("case", ["encoding", "size", "empty", "small", "thin", "no clock"])
def test_bad_image_is_rejected_and_the_node_keeps_going(ros_harness, tmp_path, case):
    """A frame the model cannot read is answered NaN (a 32 px model: under 4 px, or over 4:1, is no view)."""
    model = pixel_model(tmp_path / "m.onnx", a=3.0)
    node, offsets = start(ros_harness, model)
    bad = stamped(frame(2, {"small": (3, 3), "thin": (20, 100)}.get(case, (60, 80))))
    if case == "no clock":  # a stamp rclpy's Time refuses: predicted, but no latency of it
        bad.header.stamp.sec = -1
        publish(ros_harness, "camera/image_raw", [bad])
        assert ros_harness.spin_until(lambda: len(offsets) == 1, timeout_s=15)
        ros_harness.spin_for(0.2)
        assert len(offsets) == 1 and math.isfinite(offsets[0].point.z) and node.frames_rejected == 0
        return
    if case == "encoding":
        bad.encoding = "yuv422"
    elif case == "size":
        bad.height = 600  # 60 rows of data claim to be 600
    elif case == "empty":
        bad.height = bad.width = bad.step = 0
        bad.data = array.array("B")
    publish(ros_harness, "camera/image_raw", [bad])
    assert ros_harness.spin_until(lambda: node.frames_rejected == 1 and len(offsets) == 1, timeout_s=15)
    ros_harness.spin_for(0.2)
    # the frame is answered, with "no prediction": the controller holds on NaN
    assert len(offsets) == 1 and math.isnan(offsets[0].point.z) and offsets[0].header.stamp == bad.header.stamp
    assert {"encoding": "yuv422", "size": "expected", "empty": "empty", "small": "too small",
            "thin": "too thin"}[case] in node.last_problem

    publish(ros_harness, "camera/image_raw", [stamped(frame(3))])
    assert ros_harness.spin_until(lambda: len(offsets) == 2, timeout_s=15), "node stopped after a bad frame"
    assert math.isfinite(offsets[1].point.z)


def test_non_finite_model_output_answers_nan(ros_harness, tmp_path):
    node, offsets = start(ros_harness, nan_model(tmp_path / "nan.onnx"))
    diagnostics = ros_harness.probe.collect("/diagnostics", DiagnosticArray)
    publish(ros_harness, "camera/image_raw", [stamped(frame(i)) for i in range(3)], gap_s=0.1)
    assert ros_harness.spin_until(lambda: node.frames_rejected == 3 and len(offsets) == 3, timeout_s=15)
    assert node.frames_processed == 0 and all(math.isnan(o.point.z) for o in offsets)
    assert "non-finite" in node.last_problem
    mine = node.diagnostics.status_name
    assert ros_harness.spin_until(
        lambda: any(s.name == mine and "non-finite" in s.message for d in diagnostics for s in d.status), 5)


def test_keep_latest_drops_frames_instead_of_queueing(ros_harness, tmp_path):
    model = slow_model(tmp_path / "slow.onnx")
    reference = FocusPredictor(model, intra_op_threads=1)
    shape = (200, 200)  # at least half the model's 384 px input
    reference.predict(frame(0, shape))
    t0 = time.perf_counter()
    reference.predict(frame(0, shape))
    per_frame_s = time.perf_counter() - t0
    node, offsets = start(ros_harness, model)
    pub = ros_harness.probe.publisher("camera/image_raw", Image, SENSOR_QOS)
    assert ros_harness.wait_for_subscribers(pub)
    msgs = [stamped(frame(i, shape), t_s=1000.0 + i) for i in range(15)]
    # the executor delivers frames while this thread publishes 10x faster than the model predicts
    spinner = threading.Thread(target=ros_harness.spin_for, args=(15 * per_frame_s / 10 + 0.3,))
    spinner.start()
    for msg in msgs:
        pub.publish(msg)
        time.sleep(per_frame_s / 10)
    done_when_burst_ended = len(offsets)
    spinner.join()
    last = msgs[-1].header.stamp
    assert ros_harness.spin_until(lambda: any(o.header.stamp == last for o in offsets), timeout_s=10), \
        "the newest frame was never predicted"
    ros_harness.spin_for(3 * per_frame_s)
    # after the burst at most the frame in work, the one in the mailbox and one in the DDS reader remain
    assert len(offsets) - done_when_burst_ended <= 3, f"{len(offsets) - done_when_burst_ended} queued frames"
    assert node.frames_dropped >= 1, "no frame was replaced in the mailbox"
    assert len(offsets) + node.frames_dropped <= len(msgs) and len(offsets) < len(msgs)
    stamps = [stamp_to_s(o.header.stamp) for o in offsets]
    assert stamps == sorted(stamps), "offsets out of order"


def test_latest_frame_mailbox_counts_replaced_frames():
    box = LatestFrame()
    a, b, c = Image(width=1), Image(width=2), Image(width=3)
    box.put(a)
    box.put(b)
    assert box.take(0.0) is b and box.dropped == 1
    assert box.take(0.01) is None
    box.put(c)
    box.close()
    assert box.take(1.0) is c and box.take(1.0) is None and box.closed


def test_diagnostics_report_fps_latency_from_the_stamp_drops_and_model(ros_harness, tmp_path):
    model = pixel_model(tmp_path / "named_model.onnx", a=2.0)
    node, offsets = start(ros_harness, model, diagnostics_period_s=0.2)
    diagnostics = ros_harness.probe.collect("/diagnostics", DiagnosticArray)
    past_s = 0.5  # frames stamped half a second ago: the latency must include that age
    publish(ros_harness, "camera/image_raw", [stamped(frame(i), t_s=time.time() - past_s) for i in range(5)],
            gap_s=0.05)
    assert ros_harness.spin_until(lambda: len(offsets) == 5, timeout_s=15)
    mine = node.diagnostics.status_name

    def latest():
        found = [s for d in diagnostics for s in d.status if s.name == mine]
        return {kv.key: kv.value for kv in found[-1].values} if found else {}

    assert ros_harness.spin_until(lambda: latest().get("frames_processed") == "5", timeout_s=15)
    values = latest()
    assert values["model"] == "named_model.onnx"
    assert float(values["fps"]) > 0
    assert past_s * 1e3 <= float(values["latency_p50_ms"]) <= float(values["latency_p95_ms"]) < past_s * 1e3 + 2000
    assert values["frames_dropped"] == "0" and values["frames_rejected"] == "0"
    assert values["provider"] == "CPUExecutionProvider"


def run_node_process(*ros_args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    return subprocess.run([sys.executable, "-m", "celegans_autofocus.nodes.focus_predictor_node",
                           "--ros-args", *ros_args], env=env, capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("kind", ["missing", "corrupt"])
def test_unusable_model_stops_the_node_with_the_path(tmp_path, kind):
    path = tmp_path / f"{kind}_model.onnx"
    if kind == "corrupt":
        write_corrupt_model(path, pixel_model(tmp_path / "good.onnx"))
    result = run_node_process("-p", f"model_path:={path}")
    assert result.returncode != 0
    assert str(path) in result.stderr + result.stdout


def test_the_focus_measure_of_each_frame_comes_with_its_offset(ros_harness, tmp_path):
    """focus/measure: the label measure of the very image predicted on, same stamp, also when the model fails."""
    from celegans_autofocus.core.focus import DEFAULT_MEASURE, get_measure

    measures = ros_harness.probe.collect("focus/measure", PointStamped)
    node, offsets = start(ros_harness, pixel_model(tmp_path / "m.onnx", a=3.0))
    images = [stamped(frame(i), t_s=2000.0 + i) for i in range(3)]
    publish(ros_harness, "camera/image_raw", images, gap_s=0.2)
    assert ros_harness.spin_until(lambda: len(measures) == 3 and len(offsets) == 3)
    expected = [get_measure(DEFAULT_MEASURE)(frame(i)) for i in range(3)]
    assert [m.header.stamp for m in measures] == [i.header.stamp for i in images]
    assert [m.point.z for m in measures] == pytest.approx(expected)

    nan_node, _ = start(ros_harness, nan_model(tmp_path / "nan.onnx"), focus_measure="brenner")
    assert nan_node.measure_pub is not None
    off = start(ros_harness, pixel_model(tmp_path / "m2.onnx", a=1.0), focus_measure="")[0]
    assert off.measure_pub is None


def test_reload_model_swaps_in_a_good_file_and_refuses_a_bad_one(ros_harness, tmp_path):
    """Reload model_path while running through ~/reload_model.

    A good file is served from the next frame on; a corrupt one is refused with the file's name and the
    loaded model keeps serving.
    """
    from std_srvs.srv import Trigger

    path = tmp_path / "m.onnx"
    pixel_model(path, a=3.0)
    node, offsets = start(ros_harness, path)
    client = ros_harness.probe.create_client(Trigger, f"{node.get_fully_qualified_name()}/reload_model")
    assert client.wait_for_service(timeout_sec=15)

    def reload() -> Trigger.Response:
        future = client.call_async(Trigger.Request())
        assert ros_harness.spin_until(future.done, timeout_s=15)
        return future.result()

    publish(ros_harness, "camera/image_raw", [stamped(frame(1))])
    assert ros_harness.spin_until(lambda: len(offsets) == 1)
    write_corrupt_model(path)
    refused = reload()
    assert not refused.success and str(path) in refused.message and "kept" in refused.message
    publish(ros_harness, "camera/image_raw", [stamped(frame(1))])
    assert ros_harness.spin_until(lambda: len(offsets) == 2)
    assert offsets[1].point.z == pytest.approx(offsets[0].point.z)      # the old model
    pixel_model(path, a=1.0)
    assert reload().success
    publish(ros_harness, "camera/image_raw", [stamped(frame(1))])
    assert ros_harness.spin_until(lambda: len(offsets) == 3)
    assert offsets[2].point.z != pytest.approx(offsets[0].point.z)      # the new one
