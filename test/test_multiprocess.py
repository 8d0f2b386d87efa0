"""The nodes as separate processes (as `ros2 run` starts them): offsets cross processes and close the loop."""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
from geometry_msgs.msg import PointStamped
from sensor_msgs.msg import JointState

from onnx_models import constant_model


def spawn(node: str, namespace: str, *ros_args: str) -> subprocess.Popen:
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST", PYTHONUNBUFFERED="1")
    assert env.get("ROS_DOMAIN_ID"), "conftest.py sets the test's ROS_DOMAIN_ID"
    return subprocess.Popen([sys.executable, "-m", f"celegans_autofocus.nodes.{node}", "--ros-args",
                             "-r", f"__ns:={namespace}", *ros_args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


def test_player_predictor_controller_as_processes_close_the_loop(ros_harness, processes, tmp_path):
    ns = ros_harness.namespace
    model = constant_model(tmp_path / "plus60.onnx", 60.0, input_px=32)   # always: "focus is 60 steps up"
    truth = ros_harness.probe.collect("sim/ground_truth", PointStamped)
    joints = ros_harness.probe.collect("stepper/joint_states", JointState)
    offsets = ros_harness.probe.collect("focus/offset", PointStamped)
    processes += [
        spawn("stack_player_node", ns, "-p", "fps:=5.0", "-p", "frame_width_px:=160", "-p", "frame_height_px:=120",
              "-p", "start_best_z_steps:=400.0"),
        spawn("stepper_controller_node", ns, "-p", "soft_max_steps:=200", "-p", "publish_rate_hz:=20.0"),
    ]
    # the predictor starts once this test sees the camera and the motor, so it sees every move
    assert ros_harness.spin_until(lambda: truth and joints, timeout_s=60), "player/controller did not come up"
    processes.append(spawn("focus_predictor_node", ns, "-p", f"model_path:={model}", "-p", "intra_op_threads:=1"))

    def moved_and_seen() -> bool:
        crashed = [p for p in processes if p.poll() is not None]
        assert not crashed, crashed[0].communicate()[0]
        return (bool(offsets) and bool(joints) and joints[-1].position[0] >= 120
                and any(t.point.x >= 120 for t in truth))

    assert ros_harness.spin_until(moved_and_seen, timeout_s=60), (
        f"offsets {len(offsets)}, joint states {len(joints)}, last lens z "
        f"{truth[-1].point.x if truth else None}")
    assert offsets and all(o.point.z == pytest.approx(60.0) for o in offsets)
    # the player process renders at the z the controller process reports: the loop is closed
    assert {round(t.point.x) for t in truth} >= {0, 60, 120}
    assert all(t.point.z == pytest.approx(t.point.y - t.point.x) for t in truth)
    ros_harness.spin_until(lambda: joints[-1].position[0] == 200, timeout_s=10)
    assert max(p for j in joints for p in j.position) == 200                  # soft limit, never beyond

    for proc in processes:
        proc.send_signal(signal.SIGINT)
    for proc in processes:
        out, _ = proc.communicate(timeout=20)
        assert proc.returncode == 0, out


INTERRUPTED_TAKE = """
import os, signal, sys
from rclpy.node import Node
from celegans_autofocus.nodes.common import run_node

class Node1(Node):
    NODE_NAME = "interrupted_take"
    def __init__(self):
        super().__init__(self.NODE_NAME)
        self.create_timer(0.05, self.tick)
    def tick(self):
        try:
            if sys.argv[1] == "sigint":
                os.kill(os.getpid(), signal.SIGINT)   # Ctrl-C lands inside a pybind11 call ...
        except KeyboardInterrupt:
            pass
        raise RuntimeError("Unable to convert call argument '0' to Python object")  # ... as rclpy reports it

sys.exit(run_node(Node1))
"""


@pytest.mark.parametrize("case", ["sigint", "no_signal"])
def test_ctrl_c_during_a_take_is_a_clean_stop_but_other_errors_are_not(case):
    env = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
    proc = subprocess.run([sys.executable, "-c", INTERRUPTED_TAKE, case], env=env, capture_output=True, text=True,
                          timeout=60)
    if case == "sigint":
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    else:                     # the same RuntimeError without Ctrl-C is a crash: exit 1 with the traceback
        assert proc.returncode == 1 and "Unable to convert" in proc.stderr
