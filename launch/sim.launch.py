"""The simulated microscope: stack_player_node (synthetic or recorded stacks at the motor's z) in place
of the camera, then worm_detector_node, focus_predictor_node and stepper_controller_node (simulated
stepper), all configured by config/sim.yaml.

    ros2 launch celegans_autofocus sim.launch.py [config:=sim.yaml] [model_path:=model.onnx]
        [namespace:=sim1] [nodes:=stack_player_node,worm_detector_node] [use_sim_time:=false] [log_level:=info]

Same arguments as autofocus.launch.py, which this file includes with simulation defaults.
"""
from __future__ import annotations

from pathlib import Path

from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument, IncludeLaunchDescription
from launch.launch_description_sources import PythonLaunchDescriptionSource
from launch.substitutions import LaunchConfiguration

HERE = Path(__file__).resolve().parent
SIM_NODES = "stack_player_node,worm_detector_node,focus_predictor_node,stepper_controller_node"
ARGUMENTS = {
    "config": (str(HERE.parent / "config" / "sim.yaml"), "parameter YAML file"),
    "model_path": ("", "ONNX model for focus_predictor_node ('' = the config's, else bundled)"),
    "namespace": ("", "namespace of all nodes"),
    "nodes": (SIM_NODES, "comma-separated nodes to start"),
    "use_sim_time": ("false", "use /clock (true/false)"),
    "log_level": ("info", "debug, info, warn, error"),
}


def generate_launch_description() -> LaunchDescription:
    declared = [DeclareLaunchArgument(name, default_value=default, description=text)
                for name, (default, text) in ARGUMENTS.items()]
    base = IncludeLaunchDescription(PythonLaunchDescriptionSource(str(HERE / "autofocus.launch.py")),
                                    launch_arguments={name: LaunchConfiguration(name) for name in ARGUMENTS}.items())
    return LaunchDescription([*declared, base])
