"""The microscope: camera_node -> worm_detector_node -> focus_predictor_node -> stepper_controller_node.

    ros2 launch celegans_autofocus autofocus.launch.py [config:=my.yaml] [model_path:=model.onnx]
        [namespace:=scope1] [nodes:=camera_node,worm_detector_node] [use_sim_time:=false] [log_level:=info]

``nodes`` is a comma-separated list of the nodes to start (any of the five executables of the
package). sim.launch.py includes this file with simulation defaults.
"""
from __future__ import annotations

import os
from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, OpaqueFunction
from launch.substitutions import LaunchConfiguration
from launch_ros.actions import Node

PACKAGE = "celegans_autofocus"
ALL_NODES = ("camera_node", "worm_detector_node", "focus_predictor_node", "stepper_controller_node",
             "stack_player_node")
HARDWARE_NODES = ALL_NODES[:4]
CONFIG_DIR = Path(__file__).resolve().parent.parent / "config"  # share/<pkg>/config or the source tree
# Full frames between processes need a shared-memory segment that holds a frame (config/fastdds_large_frames.xml).
DDS_ENV = {"FASTDDS_DEFAULT_PROFILES_FILE": os.environ.get("FASTDDS_DEFAULT_PROFILES_FILE",
                                                           str(CONFIG_DIR / "fastdds_large_frames.xml"))}


def selected_nodes(text: str) -> list[str]:
    """'a, b' -> ['a', 'b'], in the order given; an unknown name raises with the valid ones."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in ALL_NODES]
    if unknown:
        raise ValueError(f"unknown node(s) {', '.join(unknown)} in nodes:=...; choose from {', '.join(ALL_NODES)}")
    if not names:
        raise ValueError(f"nodes:= is empty; choose from {', '.join(ALL_NODES)}")
    return list(dict.fromkeys(names))


def parse_bool(name: str, text: str) -> bool:
    value = text.strip().lower()
    if value not in ("true", "false", "1", "0"):
        raise ValueError(f"{name}:={text!r} must be true or false")
    return value in ("true", "1")


def node_actions(context) -> list[Node]:
    """The Node actions for the launch arguments in ``context`` (checked here, with clear errors)."""
    arg = lambda name: LaunchConfiguration(name).perform(context)  # noqa: E731
    config = Path(arg("config")).expanduser()
    if not config.is_file():
        raise FileNotFoundError(f"config:={config} does not exist (the defaults are in {CONFIG_DIR})")
    use_sim_time = parse_bool("use_sim_time", arg("use_sim_time"))
    model_path = arg("model_path")
    if model_path and not Path(model_path).expanduser().is_file():
        raise FileNotFoundError(f"model_path:={model_path} does not exist")
    actions = []
    for name in selected_nodes(arg("nodes")):
        overrides = {"use_sim_time": use_sim_time}
        if name == "focus_predictor_node" and model_path:
            overrides["model_path"] = str(Path(model_path).expanduser().resolve())
        actions.append(Node(package=PACKAGE, executable=name, name=name, namespace=arg("namespace"),
                            parameters=[str(config), overrides], output="screen", emulate_tty=True,
                            additional_env=DDS_ENV,
                            arguments=["--ros-args", "--log-level", arg("log_level")]))
    return actions


def launch_arguments(config: Path, nodes: tuple[str, ...]) -> list[DeclareLaunchArgument]:
    return [
        DeclareLaunchArgument("config", default_value=str(config), description="parameter YAML file"),
        DeclareLaunchArgument("model_path", default_value="",
                              description="ONNX model for focus_predictor_node ('' = the config's, else bundled)"),
        DeclareLaunchArgument("namespace", default_value="", description="namespace of all nodes"),
        DeclareLaunchArgument("nodes", default_value=",".join(nodes),
                              description=f"comma-separated nodes to start, of: {', '.join(ALL_NODES)}"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="use /clock (true/false)"),
        DeclareLaunchArgument("log_level", default_value="info", description="debug, info, warn, error"),
    ]


def generate_launch_description() -> LaunchDescription:
    return LaunchDescription([*launch_arguments(CONFIG_DIR / "autofocus.yaml", HARDWARE_NODES),
                              OpaqueFunction(function=node_actions)])
