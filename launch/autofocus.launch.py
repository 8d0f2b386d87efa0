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

"""The microscope: camera_node -> worm_detector_node -> focus_predictor_node -> stepper_controller_node.

    ros2 launch celegans_autofocus autofocus.launch.py [config:=my.yaml] [model_path:=model.onnx]
        [namespace:=scope1] [nodes:=camera_node,worm_detector_node] [image_topic:=/my_cam/image_raw]
        [use_sim_time:=false] [log_level:=info]

``nodes`` is a comma-separated list of the nodes to start, of the six executables of the package
(bag_recorder_node records the topics into a bag). ``image_topic`` remaps ``camera/image_raw`` of
every node, e.g. to another camera driver's topic. The nodes of the focus loop are required: when
one exits (a camera or motor that cannot start, a missing model) the whole launch shuts down.
With ``use_sim_time:=true`` stack_player_node publishes /clock (parameter ``clock: sim``) and the
other nodes follow it. sim.launch.py declares the same arguments and nodes with simulation defaults.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import yaml
from launch import LaunchDescription, Substitution
from launch.actions import DeclareLaunchArgument, GroupAction, OpaqueFunction, Shutdown
from launch.conditions import IfCondition
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node, PushRosNamespace

PACKAGE = "celegans_autofocus"
ALL_NODES = ("camera_node", "worm_detector_node", "focus_predictor_node", "stepper_controller_node",
             "stack_player_node", "bag_recorder_node")
HARDWARE_NODES = ALL_NODES[:4]
OPTIONAL_NODES = ("bag_recorder_node",)  # the others are required: the loop is useless without any of them
CLOCK_SOURCE = "stack_player_node"      # publishes /clock under use_sim_time, on its own (wall) clock
IMAGE_TOPIC = "camera/image_raw"
LOG_LEVELS = ["debug", "info", "warn", "error", "fatal"]
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"  # share/<pkg>/config or the source tree
# Full frames between processes need a shared-memory segment that holds a frame (config/fastdds_large_frames.xml).
DDS_ENV = {"FASTDDS_DEFAULT_PROFILES_FILE": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE",
                                                           str(CONFIG_DIR / "fastdds_large_frames.xml"))}


def selected_nodes(text: str) -> list[str]:
    """Split 'a, b' -> ['a', 'b'], in the order given; an unknown name raises with the valid ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_NODES]
    if unknown:
        raise ValueError(f"unknown node(s) {', '.join(unknown)} in nodes:=...; choose from {', '.join(ALL_NODES)}")
    if not names:
        raise ValueError(f"nodes:= is empty; choose from {', '.join(ALL_NODES)}")
    return list(dict.fromkeys(names))


def model_path(given: str, config: str) -> str:
    """Return the predictor's model: ``given`` (must exist), else the config's ``model_path`` ('' = bundled)."""
    if given:
        path = Path(given).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model_path:={given} does not exist")
        return str(path.resolve())
    blocks = yaml.safe_load(Path(config).expanduser().read_text()) or {}
    for key, block in blocks.items():
        if key.rsplit("/", 1)[-1] == "focus_predictor_node":
            return str((block or {}).get("ros__parameters", {}).get("model_path", ""))
    return ""


class FromArguments(Substitution):
    """A text computed from the launch arguments when the launch runs: ``compute(arg)``, ``arg(name)`` -> value."""

    def __init__(self, compute: Callable[[Callable[[str], str]], str]) -> None:
        super().__init__()
        self.compute = compute

    def perform(self, context) -> str:
        return self.compute(lambda name: LaunchConfiguration(name).perform(context))


def check_arguments(context) -> list:
    """Fails the launch with one clear line for a bad ``nodes``, ``config`` or ``model_path``."""
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    selected_nodes(arg("nodes"))
    config = Path(arg("config")).expanduser()
    if not config.is_file():
        raise FileNotFoundError(f"config:={config} does not exist (the defaults are in {CONFIG_DIR})")
    model_path(arg("model_path"), str(config))
    return []


def node_parameters(name: str) -> list:
    """Return the parameters of node ``name``: the config file, then the launch arguments' overrides."""
    sim_time = LaunchConfiguration("use_sim_time")
    if name == CLOCK_SOURCE:
        overrides = {"use_sim_time": False,
                     "clock": FromArguments(lambda arg: "sim" if arg("use_sim_time") == "true" else "wall")}
    else:
        overrides = {"use_sim_time": sim_time}
    if name == "focus_predictor_node":
        overrides["model_path"] = FromArguments(lambda arg: model_path(arg("model_path"), arg("config")))
    return [FromArguments(lambda arg: str(Path(arg("config")).expanduser())), overrides]


def node_action(name: str) -> Node:
    """Node ``name``, started if it is in ``nodes:=``; a required node's exit shuts the launch down."""
    required = {} if name in OPTIONAL_NODES else {
        "on_exit": [Shutdown(reason=f"{name} exited; the focus loop cannot run without it")]}
    return Node(package=PACKAGE, executable=name, name=name, output="screen", emulate_tty=True,
                parameters=node_parameters(name),
                remappings=[(IMAGE_TOPIC, LaunchConfiguration("image_topic"))],
                ros_arguments=["--log-level", LaunchConfiguration("log_level")],
                additional_env=DDS_ENV,
                condition=IfCondition(FromArguments(lambda arg: str(name in selected_nodes(arg("nodes"))).lower())),
                **required)


def launch_arguments(config: Path, nodes: tuple[str, ...], use_sim_time: bool = False) -> list[DeclareLaunchArgument]:
    """Declare the arguments of this file; sim.launch.py declares the same ones with its own defaults."""
    return [
        DeclareLaunchArgument("config", default_value=str(config), description="parameter YAML file"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="ONNX model for focus_predictor_node ('' = the config's, else bundled)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of all nodes"),
        DeclareLaunchArgument("nodes", default_value=",".join(nodes),
                              description=f"comma-separated nodes to start, of: {', '.join(ALL_NODES)}"),
        DeclareLaunchArgument("image_topic", default_value=IMAGE_TOPIC,
                              description="the camera image topic (remaps camera/image_raw of every node)"),
        DeclareLaunchArgument("use_sim_time", default_value=str(use_sim_time).lower(), choices=["true", "false"],
                              description=f"follow /clock; {CLOCK_SOURCE} publishes it"),
        DeclareLaunchArgument("log_level", default_value="info", choices=LOG_LEVELS, description="ROS log level"),
    ]


def launch_actions() -> list:
    """Return the argument check, then every node in the namespace, each started when ``nodes:=`` names it."""
    return [OpaqueFunction(function=check_arguments),
            GroupAction([PushRosNamespace(LaunchConfiguration("namespace")),
                         *(node_action(name) for name in ALL_NODES)])]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*launch_arguments(CONFIG_DIR / "autofocus.yaml", HARDWARE_NODES), *launch_actions()])
