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

"""A node that cannot start (hardware absent, bad configuration) exits with code 2 and one FATAL line.

Never a traceback, even when it failed half-way through its constructor (nodes/common.py run_node).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

ENV = dict(os.environ, ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")


def run_module(module: str, *ros_args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", f"celegans_autofocus.nodes.{module}", "--ros-args", *ros_args],
                          env=ENV, capture_output=True, text=True, timeout=60)


def assert_one_fatal_line(proc: subprocess.CompletedProcess, *words: str) -> None:
    output = proc.stdout + proc.stderr
    assert "Traceback" not in output, output
    fatal = [line for line in output.splitlines() if "FATAL" in line]
    assert len(fatal) == 1, output
    assert all(word in fatal[0] for word in words), fatal
    assert proc.returncode == 2, output


# Each case fails after the constructor has built part of the node, before the attribute its destroy_node uses.
@pytest.mark.parametrize("module, ros_args, words", [
    ("stepper_controller_node", ["-p", "backend:=gpio"], ["needs the step_pin and dir_pin"]),
    ("stepper_controller_node", ["-p", "backend:=grbl", "-p", "port:={tmp}/no_such_port", "-p", "startup_s:=0.0"],
     ["no_such_port"]),
    ("camera_node", ["-p", "backend:=folder", "-p", "path:={tmp}/no_such_folder"], ["no_such_folder"]),
    ("focus_predictor_node", ["-p", "model_path:={tmp}/no_such_model.onnx"], ["no_such_model.onnx"]),
    ("bag_recorder_node", ["-p", "bag_path:={tmp}"], ["cannot start"]),  # an existing directory is refused
], ids=["stepper-gpio-no-pins", "stepper-grbl-no-port", "camera-no-folder", "predictor-no-model",
        "recorder-bag-exists"])
def test_node_that_cannot_start_exits_2_with_one_fatal_line(tmp_path, module, ros_args, words):
    proc = run_module(module, *(a.format(tmp=tmp_path) for a in ros_args))
    assert_one_fatal_line(proc, "cannot start", *words)


HALF_BUILT = """
import sys
from rclpy.node import Node
from celegans_autofocus.nodes.common import ConfigError, run_node

class HalfBuilt(Node):
    NODE_NAME = "half_built"
    def __init__(self):
        super().__init__(self.NODE_NAME)
        self.create_timer(1.0, self.tick)  # the node refers to itself: it outlives the failed constructor
        raise ConfigError("device missing")
        self.device = object()
    def tick(self):
        pass
    def destroy_node(self):
        self.device.close()  # written for a fully built node
        super().destroy_node()

sys.exit(run_node(HalfBuilt))
"""


def test_run_node_survives_any_half_built_node():
    proc = subprocess.run([sys.executable, "-c", HALF_BUILT], env=ENV, capture_output=True, text=True, timeout=60)
    assert_one_fatal_line(proc, "half_built", "cannot start: device missing")


def test_repeated_ctrl_c_is_one_clean_stop():
    """Each SIGINT must be one clean stop: exit 0, no traceback.

    `ros2 launch` forwards Ctrl-C to nodes that already got it from the terminal: more SIGINTs arrive while
    the node cleans up and while Python exits.
    """
    for _ in range(3):
        proc = subprocess.Popen([sys.executable, "-m", "celegans_autofocus.nodes.stepper_controller_node"], env=ENV,
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        lines = []
        for line in proc.stdout:  # wait until the node runs
            lines.append(line)
            if "simulated stepper at" in line:
                break
        time.sleep(0.5)  # spinning (a SIGINT inside rclpy's executor constructor is rclpy's own problem)
        deadline = time.monotonic() + 20
        while proc.poll() is None and time.monotonic() < deadline:
            proc.send_signal(signal.SIGINT)
            time.sleep(0.003)
        out, _ = proc.communicate(timeout=30)
        output = "".join(lines) + out
        assert proc.returncode == 0 and "Traceback" not in output, output
