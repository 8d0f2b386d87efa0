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

"""The simulated microscope and the autofocus nodes, configured by config/sim.yaml.

stack_player_node (synthetic or recorded stacks at the motor's z) in place of the camera, then
worm_detector_node, focus_predictor_node and stepper_controller_node (simulated stepper).

    ros2 launch celegans_autofocus sim.launch.py [config:=sim.yaml] [model_path:=model.onnx]
        [namespace:=sim1] [nodes:=stack_player_node,worm_detector_node] [image_topic:=camera/image_raw]
        [use_sim_time:=true] [log_level:=info]

The arguments and nodes of autofocus.launch.py, with simulation defaults. ``use_sim_time`` is true:
stack_player_node publishes /clock (``clock: sim``) and the other nodes follow it; with false, every
node runs on the wall clock (``clock: wall``).
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

from launch import LaunchDescription

HERE = Path(__file__).resolve().parent
SIM_NODES = ("stack_player_node", "worm_detector_node", "focus_predictor_node", "stepper_controller_node")


def _autofocus_launch():
    spec = importlib.util.spec_from_file_location("celegans_autofocus_launch", HERE / "autofocus.launch.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def generate_launch_description() -> LaunchDescription:
    base = _autofocus_launch()
    return LaunchDescription([*base.launch_arguments(base.CONFIG_DIR / "sim.yaml", SIM_NODES, use_sim_time=True),
                              *base.launch_actions()])
