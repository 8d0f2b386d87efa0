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

"""Lifecycle transitions of the camera, stepper and predictor nodes on a real rclpy graph.

Driven through their ``<node>/change_state`` and ``<node>/get_state`` services (nodes/lifecycle.py).
"""
from __future__ import annotations

import gc
import time
import weakref

import pytest
import rclpy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from geometry_msgs.msg import PointStamped
from lifecycle_msgs.msg import Transition
from lifecycle_msgs.srv import ChangeState, GetState
from rclpy.context import Context
from rclpy.parameter import Parameter
from sensor_msgs.msg import Image, JointState
from std_srvs.srv import Trigger

from celegans_autofocus.hardware.cameras import CameraError
from celegans_autofocus.nodes.camera_node import CameraNode
from celegans_autofocus.nodes.common import SENSOR_QOS, array_to_image, s_to_stamp
from celegans_autofocus.nodes.focus_predictor_node import FocusPredictorNode
from celegans_autofocus.nodes.stepper_controller_node import StepperControllerNode
from onnx_models import pixel_model
from test_camera_node import write_folder
from test_predictor_node import frame

QUIET_S = 0.6  # long enough for a 50 Hz timer or a sent message to show up if anything still ran


class Lifecycle:
    """Client of one node's lifecycle services, through the probe (what `ros2 lifecycle` does)."""

    def __init__(self, harness, node):
        self.h = harness
        name = node.get_fully_qualified_name()
        self.change = harness.probe.create_client(ChangeState, f"{name}/change_state")
        self.get = harness.probe.create_client(GetState, f"{name}/get_state")
        assert self.change.wait_for_service(timeout_sec=10) and self.get.wait_for_service(timeout_sec=10)

    def _call(self, client, request):
        future = client.call_async(request)
        assert self.h.spin_until(future.done, timeout_s=20), "lifecycle service did not answer"
        return future.result()

    def state(self) -> str:
        return self._call(self.get, GetState.Request()).current_state.label

    def set(self, transition_id: int) -> bool:
        return self._call(self.change, ChangeState.Request(transition=Transition(id=transition_id))).success


def count_stays(harness, messages: list, quiet_s: float = QUIET_S) -> bool:
    """Tell whether nothing new arrives in ``messages`` for ``quiet_s`` (after a grace for in-flight ones)."""
    harness.spin_for(0.2)
    n = len(messages)
    harness.spin_for(quiet_s)
    return len(messages) == n


def test_autostart_by_default_makes_an_active_node(ros_harness):
    node = ros_harness.start(StepperControllerNode)
    assert Lifecycle(ros_harness, node).state() == "active"
    assert node.stepper is not None and node.is_active


def test_stepper_inactive_holds_the_motor_and_reactivation_resumes(ros_harness):
    node = ros_harness.start(StepperControllerNode, autostart=False, diagnostics_period_s=0.1,
                             max_speed_steps_per_s=4000.0)
    probe = ros_harness.probe
    life = Lifecycle(ros_harness, node)
    joints = probe.collect("stepper/joint_states", JointState)
    commands = probe.collect("focus/command", PointStamped)
    diagnostics = probe.collect("/diagnostics", DiagnosticArray)
    offset_pub = probe.publisher("focus/offset", PointStamped)
    assert life.state() == "unconfigured" and node.stepper is None

    def offset(z: float) -> None:
        msg = PointStamped()
        msg.header.stamp = s_to_stamp(time.time())
        msg.point.z = z
        offset_pub.publish(msg)

    def status() -> DiagnosticStatus | None:
        found = [s for d in diagnostics for s in d.status if s.name == node.diagnostics.status_name]
        return found[-1] if found else None

    assert life.set(Transition.TRANSITION_CONFIGURE) and life.state() == "inactive"
    assert node.stepper is not None and node.stepper.position_steps == 0
    assert offset_pub.get_subscription_count() == 0  # inactive: nobody listens to offsets
    offset(60.0)
    assert count_stays(ros_harness, joints) and not joints and not commands
    assert node.stepper.position_steps == 0 and node.offsets_received == 0
    assert ros_harness.spin_until(lambda: status() is not None and "inactive" in status().message, 5)
    assert status().level == DiagnosticStatus.WARN
    home = probe.create_client(Trigger, "stepper/home")
    assert home.wait_for_service(timeout_sec=5)
    future = home.call_async(Trigger.Request())
    assert ros_harness.spin_until(future.done, 10) and not future.result().success  # no homing while inactive

    assert life.set(Transition.TRANSITION_ACTIVATE) and life.state() == "active"
    assert ros_harness.wait_for_subscribers(offset_pub)
    offset(60.0)
    assert ros_harness.spin_until(lambda: commands and joints and joints[-1].position[0] == 60, 10)
    assert commands[-1].point.z == 60.0 and node.moves == 1

    assert life.set(Transition.TRANSITION_DEACTIVATE) and life.state() == "inactive"
    assert ros_harness.spin_until(lambda: offset_pub.get_subscription_count() == 0, 10)
    n_commands = len(commands)
    offset(80.0)
    assert count_stays(ros_harness, joints)
    assert len(commands) == n_commands and node.stepper.position_steps == 60 and node.moves == 1

    assert life.set(Transition.TRANSITION_ACTIVATE) and life.state() == "active"
    assert ros_harness.wait_for_subscribers(offset_pub)
    ros_harness.spin_for(0.1)  # past the settle time of the first move
    offset(-40.0)
    assert ros_harness.spin_until(lambda: joints[-1].position[0] == 20, 10)
    assert node.moves == 2

    stepper = node.stepper
    assert life.set(Transition.TRANSITION_DEACTIVATE) and life.set(Transition.TRANSITION_CLEANUP)
    assert life.state() == "unconfigured" and node.stepper is None and node.joint_pub is None
    assert not stepper.moving
    assert ros_harness.spin_until(lambda: not home.service_is_ready(), 10)  # services go with the device
    assert life.set(Transition.TRANSITION_UNCONFIGURED_SHUTDOWN) and life.state() == "finalized"


def test_camera_publishes_only_while_active_and_cleanup_closes_the_folder(tmp_path, ros_harness):
    write_folder(tmp_path, n=3)
    node = ros_harness.start(CameraNode, backend="folder", path=str(tmp_path), fps=50.0, autostart=False)
    life = Lifecycle(ros_harness, node)
    images = ros_harness.probe.collect("camera/image_raw", Image)
    assert life.state() == "unconfigured" and node.camera is None
    assert life.set(Transition.TRANSITION_CONFIGURE)
    camera = node.camera
    assert camera is not None and camera.read().image.shape == (48, 64)  # opened on configure
    assert count_stays(ros_harness, images) and not images and node.frames_published == 0

    assert life.set(Transition.TRANSITION_ACTIVATE)
    assert ros_harness.spin_until(lambda: len(images) >= 3, 10)
    assert life.set(Transition.TRANSITION_DEACTIVATE)
    published = node.frames_published
    assert count_stays(ros_harness, images) and node.frames_published == published
    assert life.set(Transition.TRANSITION_ACTIVATE)
    assert ros_harness.spin_until(lambda: node.frames_published >= published + 3, 10)

    assert life.set(Transition.TRANSITION_DEACTIVATE) and life.set(Transition.TRANSITION_CLEANUP)
    assert node.camera is None and node.image_pub is None
    with pytest.raises(CameraError, match="not open"):
        camera.read()  # the folder camera was closed
    assert life.set(Transition.TRANSITION_CONFIGURE) and node.camera is not None  # opens again


def test_camera_that_cannot_open_fails_configure_and_stays_unconfigured(ros_harness):
    node = ros_harness.start(CameraNode, backend="folder", path="/nonexistent/frames", autostart=False)
    life = Lifecycle(ros_harness, node)
    node.get_logger().set_level(50)  # the expected error stays out of the test log
    assert not life.set(Transition.TRANSITION_CONFIGURE)
    assert life.state() == "unconfigured" and node.camera is None
    assert "/nonexistent/frames" in str(node._transition_error)


def test_predictor_answers_only_while_active_and_cleanup_drops_the_session(ros_harness, tmp_path):
    model = pixel_model(tmp_path / "m.onnx", a=10.0)
    node = ros_harness.start(FocusPredictorNode, model_path=str(model), intra_op_threads=1, autostart=False)
    life = Lifecycle(ros_harness, node)
    offsets = ros_harness.probe.collect("focus/offset", PointStamped)
    image_pub = ros_harness.probe.publisher("camera/image_raw", Image, SENSOR_QOS)
    assert life.state() == "unconfigured" and node.predictor is None
    assert life.set(Transition.TRANSITION_CONFIGURE)
    session = weakref.ref(node.predictor.session)
    assert image_pub.get_subscription_count() == 0 and node.lifecycle_state == "inactive"

    def send(n: int) -> None:
        for i in range(n):
            msg = array_to_image(frame(i))
            msg.header.stamp = s_to_stamp(time.time())
            image_pub.publish(msg)
            ros_harness.spin_for(0.05)

    assert life.set(Transition.TRANSITION_ACTIVATE)
    assert ros_harness.wait_for_subscribers(image_pub)
    send(3)
    assert ros_harness.spin_until(lambda: len(offsets) == 3, 10)

    assert life.set(Transition.TRANSITION_DEACTIVATE)
    assert ros_harness.spin_until(lambda: image_pub.get_subscription_count() == 0, 10)
    send(3)
    assert count_stays(ros_harness, offsets) and len(offsets) == 3 and node.frames_processed == 3

    assert life.set(Transition.TRANSITION_ACTIVATE)
    assert ros_harness.wait_for_subscribers(image_pub)
    send(2)
    assert ros_harness.spin_until(lambda: len(offsets) == 5, 10)

    assert life.set(Transition.TRANSITION_DEACTIVATE) and life.set(Transition.TRANSITION_CLEANUP)
    assert node.predictor is None and node.offset_pub is None
    gc.collect()
    assert session() is None  # the ONNX Runtime session is released


def test_destroying_an_active_node_shuts_it_down_and_closes_the_device(tmp_path, ros_harness):
    write_folder(tmp_path, n=2)
    node = ros_harness.start(CameraNode, backend="folder", path=str(tmp_path), fps=20.0)
    camera = node.camera
    assert node.lifecycle_state == "active"
    ros_harness.executor.remove_node(node)
    ros_harness.nodes.remove(node)
    node.destroy_node()
    assert node.camera is None
    with pytest.raises(CameraError, match="not open"):
        camera.read()


def test_destroying_a_node_after_rclpy_shut_down_still_closes_the_device(tmp_path):
    """SIGTERM shuts rclpy down before the node is destroyed: the device is released all the same."""
    write_folder(tmp_path, n=2)
    context = Context()
    rclpy.init(context=context)
    node = CameraNode(context=context, parameter_overrides=[Parameter("backend", value="folder"),
                                                            Parameter("path", value=str(tmp_path))])
    camera = node.camera
    rclpy.shutdown(context=context)
    node.destroy_node()
    assert node.camera is None
    with pytest.raises(CameraError, match="not open"):
        camera.read()
